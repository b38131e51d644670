/**
 * The writer's lock on a log directory: a `LOCK` file holding the writer's
 * pid, taken with an exclusive create. A lock left by a process that is gone
 * (or by this process before a crash) is taken over; a second writer in the
 * same process is refused.
 */

import { isAlive, processId } from '#platform';
import { EventLogError, EventLogErrorCode } from './errors.js';
import { FileSystemError, joinPath, type LogFileSystem } from './fs/types.js';
import { ioFailed } from './rules.js';

const lockName = 'LOCK';

/** Locks held by logs open in this process: directory -> the filesystem's boot id when taken. */
const heldLocks = new Map<LogFileSystem, Map<string, number>>();

export class DirectoryLock {
  readonly #fs: LogFileSystem;
  readonly dir: string;
  #exclusive: (() => Promise<void>) | undefined;

  constructor(fs: LogFileSystem, dir: string) {
    this.#fs = fs;
    this.dir = dir;
  }

  /** @throws {EventLogError} `Locked`, `IoFailed` */
  async acquire(): Promise<void> {
    await this.#fs.mkdir(this.dir);
    const held = heldLocks.get(this.#fs) ?? new Map<string, number>();
    heldLocks.set(this.#fs, held);
    const bootId = this.#fs.bootId ?? 0;
    if (held.get(this.dir) === bootId)
      throw new EventLogError(EventLogErrorCode.Locked, `the log in ${this.dir} is already open in this process`);
    if (this.#fs.exclusive !== undefined) {
      this.#exclusive = await this.#fs.exclusive(this.dir);
      if (this.#exclusive === undefined)
        throw new EventLogError(EventLogErrorCode.Locked, `the log in ${this.dir} is open in another tab or worker`);
    }
    try {
      await this.#takeFile(held, bootId);
    } catch (error) {
      await this.#exclusive?.();
      this.#exclusive = undefined;
      throw error;
    }
  }

  async #takeFile(held: Map<string, number>, bootId: number): Promise<void> {
    const path = joinPath(this.dir, lockName);
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        const file = await this.#fs.open(path, { create: true, exclusive: true });
        await file.write(new TextEncoder().encode(String(processId)), 0);
        await file.sync();
        await file.close();
        await this.#fs.syncDir(this.dir);
        held.set(this.dir, bootId);
        return;
      } catch (error) {
        if (!(error instanceof FileSystemError && error.code === 'EEXIST')) throw ioFailed('taking the lock', error);
      }
      const owner = await this.#owner(path);
      if (owner !== undefined && owner !== processId && isAlive(owner)) {
        throw new EventLogError(EventLogErrorCode.Locked, `the log in ${this.dir} is open in process ${owner}`);
      }
      // A lock left by a process that is gone (or by this process before a crash): take it over.
      await this.#fs.unlink(path).catch(() => undefined);
    }
    throw new EventLogError(EventLogErrorCode.Locked, `could not take the lock of ${this.dir}`);
  }

  async #owner(path: string): Promise<number | undefined> {
    try {
      const file = await this.#fs.open(path);
      const text = new TextDecoder().decode(await file.read(0, 32));
      await file.close();
      const pid = Number(text);
      return Number.isSafeInteger(pid) && pid > 0 ? pid : undefined;
    } catch {
      return undefined;
    }
  }

  async release(): Promise<void> {
    heldLocks.get(this.#fs)?.delete(this.dir);
    await this.#fs.unlink(joinPath(this.dir, lockName)).catch(() => undefined);
    await this.#exclusive?.();
    this.#exclusive = undefined;
  }
}
