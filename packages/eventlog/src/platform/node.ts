/**
 * What `@weft/eventlog` takes from Node.js (and Bun, Deno): the real
 * filesystem, node:crypto's ChaCha20-Poly1305 and process ids for the
 * directory lock. Selected by the `#platform` import's `default` condition;
 * `browser.ts` is the other side.
 */
import { createCipheriv, createDecipheriv } from 'node:crypto';

export { nodeFileSystem } from '../fs/node-fs.js';

/** node:crypto's ChaCha20-Poly1305 constructors (the `node` cipher). */
export const nodeChaCha: { createCipheriv: typeof createCipheriv; createDecipheriv: typeof createDecipheriv } = {
  createCipheriv,
  createDecipheriv,
};

/** This process's id, written into a log directory's lock. */
export const processId: number = process.pid;

/** True when the process `pid` still runs (a lock it left is still held). */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as { code?: string }).code === 'EPERM';
  }
}
