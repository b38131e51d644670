import { basename, dirname, FileSystemError, type LogFile, type LogFileSystem, type OpenOptions } from './types.js';

/** File contents that grow in place. */
class Bytes {
  data = new Uint8Array(256);
  length = 0;

  write(source: Uint8Array, position: number): void {
    const end = position + source.length;
    if (end > this.data.length) {
      const grown = new Uint8Array(Math.max(end, this.data.length * 2));
      grown.set(this.data.subarray(0, this.length));
      this.data = grown;
    }
    if (position > this.length) this.data.fill(0, this.length, position);
    this.data.set(source, position);
    this.length = Math.max(this.length, end);
  }

  truncate(size: number): void {
    if (size > this.length) this.write(new Uint8Array(size - this.length), this.length);
    this.length = size;
  }

  snapshot(): Uint8Array {
    return this.data.slice(0, this.length);
  }

  static from(bytes: Uint8Array): Bytes {
    const copy = new Bytes();
    copy.write(bytes, 0);
    return copy;
  }
}

/** A file's identity (not a stable API), shared by every directory entry and open handle pointing at it. */
export class Inode {
  constructor(public contents: Bytes) {}
}

/**
 * An in-memory filesystem: everything lives in this object and is gone with
 * it. `sync` and `syncDir` do nothing (there is no disk to reach). Fast, for
 * tests and benchmarks that do not need crash semantics; see
 * {@link SimulatedFileSystem} for those.
 */
export class MemoryFileSystem implements LogFileSystem {
  /**
   * Changes whenever the simulated machine reboots: locks taken by a process
   * before then belong to a process that no longer exists.
   */
  bootId = 0;
  /** @internal directory path -> entries (name -> inode) */
  protected readonly directories = new Map<string, Map<string, Inode>>([['/', new Map()]]);

  async mkdir(path: string): Promise<void> {
    await this.operation('mkdir', path);
    let current = '';
    for (const part of normalize(path).split('/').filter(Boolean)) {
      current += `/${part}`;
      if (!this.directories.has(current)) this.directories.set(current, new Map());
    }
  }

  async readdir(path: string): Promise<string[]> {
    await this.operation('readdir', path);
    return [...this.#directory(path).keys()];
  }

  async exists(path: string): Promise<boolean> {
    await this.operation('exists', path);
    const full = normalize(path);
    return this.directories.has(full) || (this.directories.get(dirname(full))?.has(basename(full)) ?? false);
  }

  async open(path: string, options: OpenOptions = {}): Promise<LogFile> {
    await this.operation('open', path);
    const full = normalize(path);
    const directory = this.#directory(dirname(full));
    let inode = directory.get(basename(full));
    if (inode !== undefined && options.create && options.exclusive) throw new FileSystemError('EEXIST', `${full} exists`);
    if (inode === undefined) {
      if (!options.create) throw new FileSystemError('ENOENT', `${full} does not exist`);
      inode = new Inode(new Bytes());
      directory.set(basename(full), inode);
      this.created(full, inode);
    }
    return this.handle(full, inode);
  }

  async rename(from: string, to: string): Promise<void> {
    await this.operation('rename', from);
    const source = this.#directory(dirname(normalize(from)));
    const inode = source.get(basename(from));
    if (inode === undefined) throw new FileSystemError('ENOENT', `${from} does not exist`);
    source.delete(basename(from));
    this.#directory(dirname(normalize(to))).set(basename(to), inode);
  }

  async unlink(path: string): Promise<void> {
    await this.operation('unlink', path);
    const directory = this.#directory(dirname(normalize(path)));
    if (!directory.delete(basename(path))) throw new FileSystemError('ENOENT', `${path} does not exist`);
  }

  async syncDir(path: string): Promise<void> {
    await this.operation('syncDir', path);
    this.#directory(path);
  }

  /** The bytes of a file, for tests that inspect what was stored. */
  contents(path: string): Uint8Array {
    const inode = this.directories.get(dirname(normalize(path)))?.get(basename(path));
    if (inode === undefined) throw new FileSystemError('ENOENT', `${path} does not exist`);
    return inode.contents.snapshot();
  }

  /** Overwrites bytes of a file in place, bypassing everything, to simulate damage in tests. */
  corrupt(path: string, position: number, bytes: Uint8Array): void {
    const inode = this.directories.get(dirname(normalize(path)))?.get(basename(path));
    if (inode === undefined) throw new FileSystemError('ENOENT', `${path} does not exist`);
    inode.contents.write(bytes, position);
  }

  /** Replaces a file's whole contents, bypassing everything (tests: restoring an old copy of a file). */
  replaceContents(path: string, bytes: Uint8Array): void {
    const inode = this.directories.get(dirname(normalize(path)))?.get(basename(path));
    if (inode === undefined) throw new FileSystemError('ENOENT', `${path} does not exist`);
    inode.contents.truncate(0);
    inode.contents.write(bytes, 0);
  }

  /** @internal hook: called at the start of every operation. */
  protected async operation(_name: string, _path: string): Promise<void> {}

  /** @internal hook: a file was created. */
  protected created(_path: string, _inode: Inode): void {}

  /** @internal hook: builds the handle for an open file. */
  protected handle(path: string, inode: Inode): LogFile {
    const system = this;
    let closed = false;
    const check = async (name: string) => {
      if (closed) throw new FileSystemError('EBADF', `${path} is closed`);
      await system.operation(name, path);
    };
    return {
      async size() {
        await check('size');
        return inode.contents.length;
      },
      async read(position, length) {
        await check('read');
        return inode.contents.data.slice(position, Math.min(inode.contents.length, position + length));
      },
      async write(data, position) {
        await check('write');
        return system.writeInode(path, inode, data, position);
      },
      async sync() {
        await check('sync');
        system.syncInode(path, inode);
      },
      async truncate(size) {
        await check('truncate');
        system.truncateInode(path, inode, size);
      },
      async close() {
        closed = true;
      },
    };
  }

  /** @internal */
  protected writeInode(_path: string, inode: Inode, data: Uint8Array, position: number): number {
    inode.contents.write(data, position);
    return data.length;
  }

  /** @internal */
  protected syncInode(_path: string, _inode: Inode): void {}

  /** @internal */
  protected truncateInode(_path: string, inode: Inode, size: number): void {
    inode.contents.truncate(size);
  }

  #directory(path: string): Map<string, Inode> {
    const directory = this.directories.get(normalize(path));
    if (directory === undefined) throw new FileSystemError('ENOENT', `directory ${path} does not exist`);
    return directory;
  }
}

/** Absolute form of a path, without trailing slash. */
export function normalize(path: string): string {
  const absolute = path.startsWith('/') ? path : `/${path}`;
  const trimmed = absolute.replace(/\/+/g, '/').replace(/\/$/, '');
  return trimmed === '' ? '/' : trimmed;
}

export { Bytes };
