/**
 * The Origin Private File System (a browser's own storage for an origin) as
 * a log filesystem. Files are read and written through OPFS sync access
 * handles, which browsers give only in a dedicated worker: run the log (and
 * sync) in a Worker. One handle per file is shared by every open of it in
 * this worker; a sync access handle is exclusive, so a file open here cannot
 * be opened by another tab or worker (`EBUSY`). A log directory is held with
 * a Web Lock for as long as the log is open, so a second tab opening the same
 * log is refused `Locked` (after waiting `lockWaitMs` for it to be let go: a
 * reloaded page opens its log while the page it replaces is torn down), and
 * a tab that died releases it.
 *
 * Durability (docs/guides/browser.md): `sync()` is the handle's `flush()`,
 * which hands the bytes to the browser's storage; directory changes
 * (creations, renames, removals) take effect at once and `syncDir` has
 * nothing more to ask for. The browser may still evict an origin's storage
 * unless the page was granted `navigator.storage.persist()`.
 */
import { FileSystemError, type LogFile, type LogFileSystem, type OpenOptions } from './types.js';

// The OPFS interfaces this file uses (the package builds without the DOM library).
interface SyncAccessHandle {
  read(buffer: Uint8Array, options?: { at?: number }): number;
  write(buffer: Uint8Array, options?: { at?: number }): number;
  truncate(size: number): void;
  getSize(): number;
  flush(): void;
  close(): void;
}

interface FileHandle {
  readonly kind: 'file';
  createSyncAccessHandle?(): Promise<SyncAccessHandle>;
  move?(parent: DirectoryHandle, name: string): Promise<void>;
}

/** A directory of the Origin Private File System (`FileSystemDirectoryHandle`). */
export interface OpfsDirectoryHandle {
  readonly kind: 'directory';
  getDirectoryHandle(name: string, options?: { create?: boolean }): Promise<OpfsDirectoryHandle>;
  getFileHandle(name: string, options?: { create?: boolean }): Promise<unknown>;
  removeEntry(name: string, options?: { recursive?: boolean }): Promise<void>;
  keys(): AsyncIterable<string>;
}
type DirectoryHandle = OpfsDirectoryHandle;

interface LockManager {
  request(
    name: string,
    options: { ifAvailable?: boolean; signal?: AbortSignal },
    callback: (lock: unknown) => Promise<void> | undefined,
  ): Promise<void>;
}

interface Navigator {
  readonly storage?: { getDirectory?(): Promise<DirectoryHandle> };
  readonly locks?: LockManager;
}

/** Options of {@link opfsFileSystem}. */
export interface OpfsFileSystemOptions {
  /** The directory paths are relative to. @default the origin's OPFS root (`navigator.storage.getDirectory()`) */
  readonly root?: OpfsDirectoryHandle;
  /**
   * How long opening a log waits for another tab or worker to let go of it
   * before it is refused `Locked`: a reloaded page opens its log while the
   * page it replaces is still being torn down. @default 3000
   */
  readonly lockWaitMs?: number;
}

function failure(error: unknown, path: string): FileSystemError {
  if (error instanceof FileSystemError) return error;
  const name = (error as { name?: string } | undefined)?.name;
  const message = error instanceof Error ? error.message : String(error);
  if (name === 'NotFoundError') return new FileSystemError('ENOENT', `${path}: not found`);
  if (name === 'TypeMismatchError') return new FileSystemError('ENOTDIR', `${path}: a file where a directory is expected, or the reverse`);
  if (name === 'NoModificationAllowedError' || name === 'InvalidStateError')
    return new FileSystemError('EBUSY', `${path}: open in another tab or worker (${message})`);
  if (name === 'QuotaExceededError') return new FileSystemError('ENOSPC', `${path}: the origin's storage quota is used up`);
  return new FileSystemError('EIO', `${path}: ${message}`);
}

const defaultLockWaitMs = 3000;

function segmentsOf(path: string): string[] {
  const segments = path.split('/').filter((segment) => segment !== '' && segment !== '.');
  if (segments.includes('..')) throw new FileSystemError('EINVAL', `${path}: ".." is not taken in OPFS paths`);
  return segments;
}

interface SharedHandle {
  readonly ready: Promise<SyncAccessHandle>;
  refs: number;
}

class OpfsLogFile implements LogFile {
  #closed = false;

  constructor(
    private readonly handle: SyncAccessHandle,
    private readonly readOnly: boolean,
    private readonly path: string,
    private readonly release: () => void,
  ) {}

  #check(writing: boolean): void {
    if (this.#closed) throw new FileSystemError('EBADF', `${this.path}: the file is closed`);
    if (writing && this.readOnly) throw new FileSystemError('EBADF', `${this.path}: opened read-only`);
  }

  async size(): Promise<number> {
    this.#check(false);
    return this.handle.getSize();
  }

  async read(position: number, length: number): Promise<Uint8Array> {
    this.#check(false);
    const buffer = new Uint8Array(length);
    let filled = 0;
    try {
      while (filled < length) {
        const count = this.handle.read(buffer.subarray(filled), { at: position + filled });
        if (count === 0) break;
        filled += count;
      }
    } catch (error) {
      throw failure(error, this.path);
    }
    return filled === length ? buffer : buffer.subarray(0, filled);
  }

  async write(data: Uint8Array, position: number): Promise<number> {
    this.#check(true);
    try {
      return this.handle.write(data, { at: position });
    } catch (error) {
      throw failure(error, this.path);
    }
  }

  async sync(): Promise<void> {
    this.#check(false);
    try {
      this.handle.flush();
    } catch (error) {
      throw failure(error, this.path);
    }
  }

  async truncate(size: number): Promise<void> {
    this.#check(true);
    try {
      this.handle.truncate(size);
    } catch (error) {
      throw failure(error, this.path);
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.release();
  }
}

class OpfsFileSystem implements LogFileSystem {
  readonly #options: OpfsFileSystemOptions;
  #root: Promise<DirectoryHandle> | undefined;
  readonly #open = new Map<string, SharedHandle>();
  readonly #held = new Map<string, () => Promise<void>>();

  constructor(options: OpfsFileSystemOptions) {
    this.#options = options;
  }

  #rootHandle(): Promise<DirectoryHandle> {
    this.#root ??= (async () => {
      if (this.#options.root !== undefined) return this.#options.root;
      const storage = (globalThis as { navigator?: Navigator }).navigator?.storage;
      if (storage?.getDirectory === undefined) {
        throw new FileSystemError(
          'ENOSYS',
          'the Origin Private File System is not available here: it is in browsers, in pages and workers of a secure context (https or localhost)',
        );
      }
      return storage.getDirectory();
    })();
    return this.#root;
  }

  async #directory(segments: readonly string[], create: boolean, path: string): Promise<DirectoryHandle> {
    let directory = await this.#rootHandle();
    try {
      for (const segment of segments) directory = await directory.getDirectoryHandle(segment, { create });
    } catch (error) {
      throw failure(error, path);
    }
    return directory;
  }

  async #parentOf(path: string): Promise<{ parent: DirectoryHandle; name: string; key: string }> {
    const segments = segmentsOf(path);
    const name = segments.pop();
    if (name === undefined) throw new FileSystemError('EISDIR', `${path}: the root is a directory`);
    return { parent: await this.#directory(segments, false, path), name, key: [...segments, name].join('/') };
  }

  async mkdir(path: string): Promise<void> {
    await this.#directory(segmentsOf(path), true, path);
  }

  async readdir(path: string): Promise<string[]> {
    const directory = await this.#directory(segmentsOf(path), false, path);
    const names: string[] = [];
    for await (const name of directory.keys()) names.push(name);
    return names.sort();
  }

  async exists(path: string): Promise<boolean> {
    const segments = segmentsOf(path);
    if (segments.length === 0) return true;
    try {
      const { parent, name } = await this.#parentOf(path);
      try {
        await parent.getFileHandle(name);
      } catch (error) {
        if ((error as { name?: string }).name !== 'TypeMismatchError') throw error;
        await parent.getDirectoryHandle(name);
      }
      return true;
    } catch (error) {
      const code = failure(error, path).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') return false;
      throw failure(error, path);
    }
  }

  async open(path: string, options: OpenOptions = {}): Promise<LogFile> {
    const { parent, name, key } = await this.#parentOf(path);
    if (options.create === true && options.exclusive === true && (await this.exists(path)))
      throw new FileSystemError('EEXIST', `${path}: exists`);
    let shared = this.#open.get(key);
    if (shared === undefined) {
      const ready = (async () => {
        const file = (await parent.getFileHandle(name, { create: options.create === true })) as FileHandle;
        if (typeof file.createSyncAccessHandle !== 'function') {
          throw new FileSystemError(
            'ENOSYS',
            'OPFS sync access handles exist only in a dedicated worker: open the log in a Worker (docs/guides/browser.md)',
          );
        }
        // A handle of a worker that just ended (a reloaded page's) can take a moment to close: try again briefly.
        const deadline = Date.now() + (this.#options.lockWaitMs ?? defaultLockWaitMs);
        for (;;) {
          try {
            return await file.createSyncAccessHandle();
          } catch (error) {
            if ((error as { name?: string }).name !== 'NoModificationAllowedError' || Date.now() > deadline) throw error;
            await new Promise((resolve) => setTimeout(resolve, 20));
          }
        }
      })();
      shared = { ready, refs: 0 };
      this.#open.set(key, shared);
      ready.catch(() => {
        if (this.#open.get(key) === shared) this.#open.delete(key);
      });
    }
    shared.refs++;
    let handle: SyncAccessHandle;
    try {
      handle = await shared.ready;
    } catch (error) {
      shared.refs--;
      throw failure(error, path);
    }
    const entry = shared;
    return new OpfsLogFile(handle, options.readOnly === true, path, () => {
      entry.refs--;
      if (entry.refs === 0 && this.#open.get(key) === entry) {
        this.#open.delete(key);
        handle.close();
      }
    });
  }

  async rename(from: string, to: string): Promise<void> {
    const source = await this.#parentOf(from);
    const target = await this.#parentOf(to);
    if (this.#open.has(source.key) || this.#open.has(target.key))
      throw new FileSystemError('EBUSY', `${this.#open.has(source.key) ? from : to}: open, cannot be renamed`);
    try {
      const file = (await source.parent.getFileHandle(source.name)) as FileHandle;
      if (typeof file.move !== 'function') throw new FileSystemError('ENOSYS', 'this browser cannot move OPFS files');
      // Chromium's move replaces an existing target in one step, as rename(2) does.
      await file.move(target.parent, target.name);
    } catch (error) {
      throw failure(error, `${from} -> ${to}`);
    }
  }

  async unlink(path: string): Promise<void> {
    const { parent, name, key } = await this.#parentOf(path);
    if (this.#open.has(key)) throw new FileSystemError('EBUSY', `${path}: open, cannot be removed`);
    try {
      await parent.removeEntry(name);
    } catch (error) {
      throw failure(error, path);
    }
  }

  async syncDir(_path: string): Promise<void> {
    // OPFS applies directory changes at once; there is no directory flush to ask for.
  }

  async exclusive(path: string): Promise<(() => Promise<void>) | undefined> {
    const key = segmentsOf(path).join('/');
    if (this.#held.has(key)) return undefined;
    const locks = (globalThis as { navigator?: Navigator }).navigator?.locks;
    if (locks === undefined) {
      this.#held.set(key, async () => undefined);
    } else {
      let release: () => void = () => undefined;
      const held = new Promise<void>((resolve) => {
        release = resolve;
      });
      let granted: (taken: boolean) => void = () => undefined;
      const decided = new Promise<boolean>((resolve) => {
        granted = resolve;
      });
      // The lock manager holds the lock while the callback's promise is pending; request() settles once it is free.
      // It waits up to lockWaitMs for another holder to let go, then gives up (the request is aborted).
      const signal = AbortSignal.timeout(this.#options.lockWaitMs ?? defaultLockWaitMs);
      const freed = locks.request(`weft-eventlog:${key}`, { signal }, (lock) => {
        granted(lock !== null);
        return lock === null ? undefined : held;
      });
      freed.catch(() => granted(false));
      if (!(await decided)) return undefined;
      this.#held.set(key, async () => {
        release();
        await freed.catch(() => undefined);
      });
    }
    return async () => {
      const release = this.#held.get(key);
      this.#held.delete(key);
      await release?.();
    };
  }
}

/**
 * A log filesystem on the Origin Private File System, for a log in a
 * browser's dedicated worker. Paths are relative to the origin's OPFS root
 * (or `options.root`).
 */
export function opfsFileSystem(options: OpfsFileSystemOptions = {}): LogFileSystem {
  return new OpfsFileSystem(options);
}
