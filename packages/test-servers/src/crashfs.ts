import { spawn, spawnSync } from 'node:child_process';
import { accessSync, constants, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { makeDataDir, removeDir } from './process.js';

/**
 * A directory on crashfs (`tools/crashfs`), a FUSE file system that can lose
 * what a machine crash loses: every byte written since the file's last
 * fsync. Creating, renaming and removing files count as durable at once (a
 * journaling file system makes them so within seconds). Servers whose data
 * lives here can be put through a power loss: kill them, {@link crash}, and
 * start them again.
 */
export interface CrashFs {
  /** The mounted directory: give servers their data directories below it. */
  readonly path: string;
  /**
   * Makes everything written so far durable, as the operating system's
   * write-back of its page cache does within half a minute: what a crash
   * loses after this is what was written since.
   */
  writeBack(): Promise<void>;
  /**
   * The power loss: every process using the file system must be dead
   * (killed) first. The files lose what was written since their last fsync
   * (or {@link writeBack}); then the file system is mounted again.
   */
  crash(): Promise<void>;
  /** Unmounts and removes everything. */
  stop(): Promise<void>;
}

/** Where crashfs is built (`bash scripts/install-crashfs.sh`): `WEFT_CRASHFS`, else the repository's cache. */
export function crashFsBinary(): string {
  return process.env.WEFT_CRASHFS ?? fileURLToPath(new URL('../../../.cache/crashfs/crashfs', import.meta.url));
}

/** Why crashfs cannot run here, or `undefined` when it can. */
export function crashFsUnavailable(): string | undefined {
  if (process.platform !== 'linux') return 'crashfs needs Linux (FUSE)';
  if (process.getuid?.() !== 0) return 'crashfs mounts without fusermount, as root only';
  try {
    accessSync('/dev/fuse', constants.R_OK | constants.W_OK);
  } catch {
    return 'crashfs needs /dev/fuse';
  }
  try {
    accessSync(crashFsBinary(), constants.X_OK);
  } catch {
    return `crashfs not found at ${crashFsBinary()}: build it with \`bash scripts/install-crashfs.sh\` (needs Go)`;
  }
  probed ??= probe();
  return probed === '' ? undefined : probed;
}

/** What mounting an empty crashfs here said ('' when it worked), asked once. */
let probed: string | undefined;

function probe(): string {
  const result = spawnSync(crashFsBinary(), ['probe'], { encoding: 'utf8', timeout: 30_000 });
  if (result.status === 0) return '';
  return `crashfs cannot mount here: ${(result.stderr || result.error?.message || `exit ${result.status}`).trim()}`;
}

/** Mounts a new, empty crashfs directory. */
export async function startCrashFs(): Promise<CrashFs> {
  const root = makeDataDir('crashfs');
  const path = join(root, 'mount');
  mkdirSync(path, { recursive: true });
  // crashfs unmounts and ends when its standard input closes: when this process ends, however it ends.
  const child = spawn(crashFsBinary(), [path, join(root, 'backing'), join(root, 'durable')], { stdio: ['pipe', 'pipe', 'pipe'] });
  const lines: string[] = [];
  let errors = '';
  let exited: string | undefined;
  let wake: () => void = () => undefined;
  child.stdout.setEncoding('utf8');
  child.stderr.setEncoding('utf8');
  child.stdout.on('data', (chunk: string) => {
    lines.push(...chunk.split('\n').filter((line) => line !== ''));
    wake();
  });
  child.stderr.on('data', (chunk: string) => {
    errors += chunk;
  });
  // A test process that ends without stop() must not leave the file system mounted.
  const unmount = () => child.kill('SIGTERM');
  process.once('exit', unmount);
  child.on('exit', (code, signal) => {
    process.off('exit', unmount);
    exited = `crashfs exited (${signal ?? code}): ${errors.trim()}`;
    wake();
  });
  const said = async (line: string): Promise<void> => {
    for (;;) {
      const index = lines.indexOf(line);
      if (index >= 0) {
        lines.splice(index, 1);
        return;
      }
      if (exited !== undefined) throw new Error(exited);
      await new Promise<void>((resolve) => {
        wake = resolve;
      });
    }
  };
  const ask = async (signal: NodeJS.Signals, line: string) => {
    if (exited !== undefined) throw new Error(exited);
    child.kill(signal);
    await said(line);
  };
  try {
    await said('ready');
  } catch (error) {
    removeDir(root);
    throw error;
  }
  return {
    path,
    writeBack: () => ask('SIGUSR2', 'written back'),
    crash: () => ask('SIGUSR1', 'crashed'),
    stop: async () => {
      if (exited === undefined) {
        const gone = new Promise<void>((resolve) => child.once('exit', () => resolve()));
        child.kill('SIGTERM');
        await gone;
      }
      removeDir(root);
    },
  };
}
