import { Bytes, type Inode, MemoryFileSystem, normalize } from './memory-fs.js';
import { basename, dirname, FileSystemError } from './types.js';

/** A fault injected at one operation index. */
export type InjectedFault = 'EIO' | 'ENOSPC' | 'short-write';

/** One operation that reached stable storage, in the order it did. */
export type DurableOperation =
  | { readonly op: 'sync'; readonly path: string; readonly size: number }
  | { readonly op: 'syncDir'; readonly path: string; readonly entries: readonly string[] };

/** Thrown by every operation once the simulated machine has "crashed" (see {@link SimulatedFileSystem.crashAt}). */
export class SimulatedCrash extends Error {
  override readonly name = 'SimulatedCrash';
  constructor(readonly operationIndex: number) {
    super(`the simulated machine crashed at operation ${operationIndex}`);
  }
}

type PendingChange =
  | { readonly kind: 'write'; readonly position: number; readonly bytes: Uint8Array }
  | { readonly kind: 'truncate'; readonly size: number };

/** Durability state of one file: what is on "disk", and what changed since. */
interface FileState {
  durable: Uint8Array;
  pending: PendingChange[];
}

/** A seeded pseudo-random generator (mulberry32), so crash outcomes replay from a seed. */
function random(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let value = state;
    value = Math.imul(value ^ (value >>> 15), value | 1);
    value ^= value + Math.imul(value ^ (value >>> 7), value | 61);
    return ((value ^ (value >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * A filesystem simulation that knows what is durable. File data becomes
 * durable on `sync`, directory entries (creations, renames, removals) on
 * `syncDir`. {@link crash} throws away everything else, keeping for each file
 * a random selection of its unsynced writes (whole, partial for appends, or
 * lost), as a power cut would. Faults (EIO, ENOSPC, short writes) can be
 * injected at chosen operation indexes, fsyncs can be dropped (a lying disk),
 * and every durable operation is recorded in order.
 *
 * It is a simulation for tests, not a filesystem.
 */
export class SimulatedFileSystem extends MemoryFileSystem {
  /** Operations performed so far; the next operation has this index. */
  operations = 0;
  /** Every durable operation in order. */
  readonly durableLog: DurableOperation[] = [];
  /** When true, `sync` succeeds without making anything durable. */
  dropSyncs = false;
  /** Every operation in order (name and path), when {@link traceOperations} is on. */
  readonly trace: Array<{ readonly op: string; readonly path: string }> = [];
  traceOperations = false;
  readonly #faults = new Map<number, InjectedFault>();
  #crashAt: number | undefined;
  #crashed = false;
  readonly #files = new Map<Inode, FileState>();
  #durableDirectories = new Map<string, Map<string, Inode>>([['/', new Map()]]);

  /** Makes the operation with index `index` fail with `fault`. */
  failAt(index: number, fault: InjectedFault): void {
    this.#faults.set(index, fault);
  }

  /** Makes the machine crash when operation `index` starts: it and every later operation throw {@link SimulatedCrash}. */
  crashAt(index: number | undefined): void {
    this.#crashAt = index;
  }

  /** True once a crash point was reached and {@link crash} has not been called yet. */
  get crashed(): boolean {
    return this.#crashed;
  }

  /**
   * Reboots to the durable state: directory entries as of each directory's
   * last `syncDir`, file contents as of their last `sync`, plus a random part
   * of the unsynced changes chosen with `seed`. Faults and the crash point
   * are cleared.
   */
  crash(seed = 0): void {
    const next = random(seed);
    for (const [inode, state] of this.#files) {
      const contents = Bytes.from(state.durable);
      for (const change of state.pending) {
        const roll = next();
        if (change.kind === 'truncate') {
          if (roll < 0.5) contents.truncate(change.size);
        } else if (change.position >= state.durable.length && roll < 1 / 3) {
          // An append may reach the disk partly: a prefix of it, as a torn write.
          contents.write(change.bytes.subarray(0, Math.floor(next() * change.bytes.length)), change.position);
        } else if (roll < 2 / 3) {
          contents.write(change.bytes, change.position);
        }
      }
      inode.contents = contents;
      this.#files.set(inode, { durable: contents.snapshot(), pending: [] });
    }
    this.directories.clear();
    for (const [path, entries] of this.#durableDirectories) this.directories.set(path, new Map(entries));
    this.#faults.clear();
    this.#crashAt = undefined;
    this.#crashed = false;
    this.bootId++;
  }

  override async mkdir(path: string): Promise<void> {
    await super.mkdir(path);
    // Directories themselves are taken as durable once made; only their entries are tracked.
    for (const [directory, entries] of this.directories) {
      if (!this.#durableDirectories.has(directory)) this.#durableDirectories.set(directory, new Map(entries));
    }
  }

  override async syncDir(path: string): Promise<void> {
    await super.syncDir(path);
    const full = normalize(path);
    const entries = this.directories.get(full) ?? new Map<string, Inode>();
    if (this.dropSyncs) return;
    this.#durableDirectories.set(full, new Map(entries));
    this.durableLog.push({ op: 'syncDir', path: full, entries: [...entries.keys()].sort() });
  }

  protected override async operation(name: string, path: string): Promise<void> {
    const index = this.operations++;
    if (this.traceOperations) this.trace.push({ op: name, path: normalize(path) });
    if (this.#crashed || this.#crashAt === index) {
      this.#crashed = true;
      throw new SimulatedCrash(index);
    }
    const fault = this.#faults.get(index);
    if (fault === undefined || fault === 'short-write') return;
    if (name === 'write' || name === 'sync' || name === 'open' || name === 'truncate' || name === 'rename' || name === 'syncDir') {
      this.#faults.delete(index);
      throw new FileSystemError(fault, `injected at operation ${index} (${name} ${path})`);
    }
  }

  protected override created(_path: string, inode: Inode): void {
    this.#files.set(inode, { durable: new Uint8Array(0), pending: [] });
  }

  protected override writeInode(path: string, inode: Inode, data: Uint8Array, position: number): number {
    const index = this.operations - 1;
    let bytes = data;
    if (this.#faults.get(index) === 'short-write' && data.length > 1) {
      this.#faults.delete(index);
      bytes = data.subarray(0, Math.floor(data.length / 2));
    }
    super.writeInode(path, inode, bytes, position);
    this.#state(inode).pending.push({ kind: 'write', position, bytes: bytes.slice() });
    return bytes.length;
  }

  protected override syncInode(path: string, inode: Inode): void {
    if (this.dropSyncs) return;
    const state = this.#state(inode);
    state.durable = inode.contents.snapshot();
    state.pending = [];
    this.durableLog.push({ op: 'sync', path: normalize(path), size: state.durable.length });
  }

  protected override truncateInode(path: string, inode: Inode, size: number): void {
    super.truncateInode(path, inode, size);
    this.#state(inode).pending.push({ kind: 'truncate', size });
  }

  #state(inode: Inode): FileState {
    let state = this.#files.get(inode);
    if (state === undefined) {
      state = { durable: new Uint8Array(0), pending: [] };
      this.#files.set(inode, state);
    }
    return state;
  }

  /** Whether the file at `path` exists in the durable directory state. */
  durablyExists(path: string): boolean {
    const full = normalize(path);
    return this.#durableDirectories.get(dirname(full))?.has(basename(full)) ?? false;
  }
}
