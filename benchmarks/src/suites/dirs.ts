import { mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';

/** Where logs and raw files are written: `WEFT_BENCH_DIR`, or the system's temporary directory. */
export function benchDir(): string {
  const dir = process.env.WEFT_BENCH_DIR ?? tmpdir();
  mkdirSync(dir, { recursive: true });
  return dir;
}
