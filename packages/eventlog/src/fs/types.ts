/**
 * The filesystem seam: every byte the event log reads or writes goes through
 * these two interfaces, so tests can swap the real disk for an in-memory one
 * or for a simulation that loses what was not synced.
 */

/** Options of {@link LogFileSystem.open}. */
export interface OpenOptions {
  /** Create the file when missing. */
  readonly create?: boolean;
  /** With `create`: fail with code `EEXIST` when the file exists. */
  readonly exclusive?: boolean;
  /** Open for reading only. */
  readonly readOnly?: boolean;
}

/** An open file. Positions are byte offsets. */
export interface LogFile {
  /** The file's current size. */
  size(): Promise<number>;
  /** Reads up to `length` bytes at `position` (fewer at the end of the file). */
  read(position: number, length: number): Promise<Uint8Array>;
  /** Writes `data` at `position`; returns how many bytes were written (a short write returns fewer). */
  write(data: Uint8Array, position: number): Promise<number>;
  /** Makes the file's contents durable (fsync). */
  sync(): Promise<void>;
  /** Cuts the file to `size` bytes. */
  truncate(size: number): Promise<void>;
  close(): Promise<void>;
}

/** A directory tree of {@link LogFile}s. Paths use `/`. */
export interface LogFileSystem {
  /** Creates a directory and its parents; succeeds when it exists. */
  mkdir(path: string): Promise<void>;
  /** Names in a directory. */
  readdir(path: string): Promise<string[]>;
  exists(path: string): Promise<boolean>;
  open(path: string, options?: OpenOptions): Promise<LogFile>;
  /** Atomically replaces `to` with `from` (durable once the directory is synced). */
  rename(from: string, to: string): Promise<void>;
  unlink(path: string): Promise<void>;
  /** Makes the directory's entries (creations, renames, removals) durable. */
  syncDir(path: string): Promise<void>;
  /**
   * Takes exclusive use of a directory for one open log across every
   * process, tab or worker that could open it, where the filesystem has such
   * a lock (OPFS: a Web Lock); returns its release, which settles once the
   * lock is free again, or `undefined` when another holds it. Without it,
   * the lock file alone guards a directory.
   */
  exclusive?(path: string): Promise<(() => Promise<void>) | undefined>;
  /** For simulations: changes when the simulated machine reboots, which releases the locks of its dead processes. */
  readonly bootId?: number;
}

/** An error a filesystem reports, with its POSIX code (`EIO`, `ENOSPC`, `ENOENT`, `EEXIST`). */
export class FileSystemError extends Error {
  override readonly name = 'FileSystemError';
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(`${code}: ${message}`);
  }
}

/** Joins path segments with `/`. */
export function joinPath(...parts: string[]): string {
  return parts.join('/').replace(/\/+/g, '/');
}

/** The directory part of a path. */
export function dirname(path: string): string {
  const index = path.lastIndexOf('/');
  return index <= 0 ? (index === 0 ? '/' : '.') : path.slice(0, index);
}

/** The last segment of a path. */
export function basename(path: string): string {
  return path.slice(path.lastIndexOf('/') + 1);
}
