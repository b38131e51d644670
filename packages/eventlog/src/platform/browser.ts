/**
 * The browser's side of `#platform` (node.ts is Node's): no node:fs and no
 * node:crypto. `nodeFileSystem` and the `node` cipher are there so one API
 * serves every runtime, and fail with a typed error when used; the `auto`
 * cipher falls back to libsodium's WebAssembly build or @noble/ciphers.
 */
import type { createCipheriv, createDecipheriv } from 'node:crypto';
import { FileSystemError, type LogFileSystem } from '../fs/types.js';

function absent(): never {
  throw new FileSystemError('ENOSYS', 'nodeFileSystem needs node:fs, which a browser does not have: pass a filesystem as the fs option');
}

/** Node's filesystem is not in a browser: every call fails with `FileSystemError` `ENOSYS`. */
export const nodeFileSystem: LogFileSystem = {
  open: async () => absent(),
  exists: async () => absent(),
  readdir: async () => absent(),
  mkdir: async () => absent(),
  unlink: async () => absent(),
  rename: async () => absent(),
  syncDir: async () => absent(),
};

function noNodeCrypto(): never {
  throw new TypeError("the 'node' cipher needs node:crypto, which a browser does not have");
}

/** node:crypto is not in a browser: the `node` cipher throws, and `auto` picks another. */
export const nodeChaCha: { createCipheriv: typeof createCipheriv; createDecipheriv: typeof createDecipheriv } = {
  createCipheriv: noNodeCrypto as unknown as typeof createCipheriv,
  createDecipheriv: noNodeCrypto as unknown as typeof createDecipheriv,
};

/** A page or worker has no process id: a random one per page, written into a log directory's lock. */
export const processId: number = globalThis.crypto.getRandomValues(new Uint32Array(1))[0] as number;

/**
 * Whether the page that left a lock still runs cannot be asked here; the
 * lock is taken over, and a filesystem made for a browser holds its own
 * exclusive access where it needs one.
 */
export function isAlive(_pid: number): boolean {
  return false;
}
