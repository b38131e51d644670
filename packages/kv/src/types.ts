/**
 * The `@weft/kv` contract: capability interfaces every backend implements with
 * one meaning. `docs/semantics.md` states the same contract in prose.
 */

declare const versionBrand: unique symbol;
declare const cursorBrand: unique symbol;

/**
 * A key's version, opaque and backend-specific (NATS stream sequence, Redis
 * stream id, FDB versionstamp hex). Compare versions only for equality; per
 * key they strictly increase.
 */
export type Version = string & { readonly [versionBrand]: true };

/**
 * A position in a bucket's change history, carried by every watch event.
 * Cursors are totally ordered within a bucket (compare with
 * {@link KvWatcher.compareCursors}) and safe to persist and pass back later.
 */
export type WatchCursor = string & { readonly [cursorBrand]: true };

/** A live value. */
export interface KvEntry {
  readonly key: string;
  readonly value: Uint8Array;
  readonly version: Version;
}

/** The raw latest record of a key, tombstones included. */
export type KvRecord =
  | { readonly key: string; readonly op: 'put'; readonly value: Uint8Array; readonly version: Version }
  | { readonly key: string; readonly op: 'delete' | 'purge'; readonly version: Version };

/** A change delivered by a watch. Every event carries the cursor to resume after it. */
export type WatchEvent =
  | {
      readonly type: 'put';
      readonly key: string;
      readonly value: Uint8Array;
      readonly version: Version;
      readonly cursor: WatchCursor;
    }
  | { readonly type: 'delete'; readonly key: string; readonly version: Version; readonly cursor: WatchCursor }
  | { readonly type: 'purge'; readonly key: string; readonly version: Version; readonly cursor: WatchCursor }
  | { readonly type: 'expire'; readonly key: string; readonly cursor: WatchCursor }
  | {
      /**
       * The watch has delivered everything up to the bucket's head as of the
       * watch's start: the full live state (without `from`) or every change
       * after `from`. Emitted exactly once per watch.
       */
      readonly type: 'synced';
      readonly cursor: WatchCursor;
    };

/** The kinds of watch event. */
export type WatchEventType = WatchEvent['type'];

/** Options of {@link KvWatcher.watch}. */
export interface WatchOptions {
  /**
   * Whole-token key prefixes to watch; omitted means the whole bucket. Several
   * prefixes give one stream in one cursor order.
   */
  readonly prefixes?: readonly string[] | undefined;
  /**
   * Resume after this cursor: deliver only what changed after it (at least the
   * latest change of every key), then `synced`, then live changes. Without it
   * the watch starts with the current live state.
   */
  readonly from?: WatchCursor | undefined;
  /** Aborting ends the iteration normally and releases server-side resources. */
  readonly signal?: AbortSignal | undefined;
}

/** What a backend can do, reported when the store opens. */
export interface KvCapabilities {
  /** `putWithTtl` is honoured; when false it throws `Unsupported`. */
  readonly ttl: boolean;
  /** `purge` is honoured; when false it throws `Unsupported`. */
  readonly purge: boolean;
  /** A watch on several prefixes is filtered by the server (`native`) or the client (`emulated`). */
  readonly multiPrefixWatch: 'native' | 'emulated';
  /** The largest value accepted, in bytes. */
  readonly maxValueBytes: number;
  /** A read issued after a write returned observes that write (on the same handle). */
  readonly readYourWrites: boolean;
  /** How many versions per key the change history retains (`Infinity` for all of them). */
  readonly history: number;
  /**
   * A write to a key whose TTL has passed but was not swept yet is preceded
   * in watches by that key's `expire` event, so watchers see the removal
   * before whatever comes next. When false, such a write replaces the entry
   * without an `expire` event (the entry still reads as absent from the
   * moment its TTL passes).
   */
  readonly expireBeforeNextWrite: boolean;
  /**
   * `commit` applies several writes atomically, within these limits; `false`
   * when this bucket cannot (`commit` then throws `Unsupported`).
   */
  readonly commit: KvCommitLimits | false;
}

/** How much one {@link KvCommit.commit} may carry. */
export interface KvCommitLimits {
  /** The most operations in one commit. */
  readonly maxOps: number;
  /** The most value bytes in one commit, all operations together. */
  readonly maxBytes: number;
}

/**
 * One write of a commit, with its precondition: the same writes as the
 * store's methods of those names.
 */
export type KvCommitOp =
  | { readonly op: 'put'; readonly key: string; readonly value: Uint8Array }
  | { readonly op: 'putWithTtl'; readonly key: string; readonly value: Uint8Array; readonly ttlMs: number }
  | { readonly op: 'create'; readonly key: string; readonly value: Uint8Array }
  | { readonly op: 'update'; readonly key: string; readonly value: Uint8Array; readonly expected: Version }
  | { readonly op: 'delete'; readonly key: string }
  | { readonly op: 'deleteWithVersion'; readonly key: string; readonly expected: Version };

/** The most keys one {@link KvReader.getMany} call takes. */
export const maxGetManyKeys = 4096;

/** Reads. Expired entries and tombstones are never returned as live values. */
export interface KvReader {
  /**
   * The live value of `key`, or `undefined` when it is absent, deleted, purged or expired.
   *
   * @throws {KvError} `InvalidKey`, `Closed`, connection errors
   */
  get(key: string): Promise<KvEntry | undefined>;
  /**
   * The live values of `keys`, in their order (`undefined` where `get` gives
   * `undefined`): each as `get` gives it at some moment during the call, not
   * one snapshot of all of them. Backends that can read many keys in one
   * request do (NATS 2.11 and later: a batch direct get); the others read
   * them at once, each on its own. At most {@link maxGetManyKeys} keys.
   *
   * @throws {KvError} `InvalidKey`, `InvalidArgument` (not an array, or too many keys), `Closed`, connection errors
   */
  getMany(keys: readonly string[]): Promise<(KvEntry | undefined)[]>;
  /**
   * The raw latest record of `key`, tombstones included; `undefined` when the
   * key was never written, or has expired.
   *
   * @throws {KvError} `InvalidKey`, `Closed`, connection errors
   */
  entry(key: string): Promise<KvRecord | undefined>;
  /**
   * The live keys under `prefix` (whole tokens; omitted means all), streamed.
   *
   * @throws {KvError} `InvalidKey`, `Closed`, connection errors
   */
  keys(prefix?: string): AsyncIterable<string>;
  /**
   * The live entries under `prefix` (whole tokens; omitted means all), streamed.
   *
   * @throws {KvError} `InvalidKey`, `Closed`, connection errors
   */
  scan(prefix?: string): AsyncIterable<KvEntry>;
}

/** Writes with compare-and-swap. */
export interface KvWriter {
  /**
   * Writes `value` unconditionally and clears any TTL.
   *
   * @returns the new version
   * @throws {KvError} `InvalidKey`, `InvalidArgument`, `ValueTooLarge`, `Indeterminate`, `Closed`
   */
  put(key: string, value: Uint8Array): Promise<Version>;
  /**
   * Writes `value` only when the key has no live value (creating over a tombstone succeeds).
   *
   * @throws {KvError} `AlreadyExists` when a live value exists
   */
  create(key: string, value: Uint8Array): Promise<Version>;
  /**
   * Writes `value` only when the current version is `expected`.
   *
   * @throws {KvError} `RevisionMismatch` when it differs (absent or deleted counts as different)
   */
  update(key: string, value: Uint8Array, expected: Version): Promise<Version>;
  /**
   * Writes a tombstone.
   *
   * @returns the tombstone's version
   */
  delete(key: string): Promise<Version>;
  /**
   * Writes a tombstone only when the current version is `expected`.
   *
   * @throws {KvError} `RevisionMismatch` when it differs
   */
  deleteWithVersion(key: string, expected: Version): Promise<Version>;
}

/** Time-to-live writes. */
export interface KvTtl {
  /**
   * Writes `value` that is visible until `ttlMs` has passed and never after it
   * expires; watchers then see an `expire` event within the backend's
   * documented delay.
   *
   * @throws {KvError} `Unsupported` when `capabilities.ttl` is false; `InvalidArgument` for a TTL that is not a positive finite number
   */
  putWithTtl(key: string, value: Uint8Array, ttlMs: number): Promise<Version>;
}

/** Deleting a key together with its history. */
export interface KvPurge {
  /**
   * Deletes `key` and reclaims its history; watchers see a `purge` event.
   *
   * @returns the purge marker's version
   * @throws {KvError} `Unsupported` when `capabilities.purge` is false
   */
  purge(key: string): Promise<Version>;
}

/** Several writes in one atomic step. */
export interface KvCommit {
  /**
   * Applies every operation or none. When every precondition holds, all of
   * them apply in one step: no reader sees some applied and not others, and
   * watchers receive them one after another, in op order, with nothing
   * between them. When one fails, nothing is written and the error names the
   * first failing operation's key. A key may appear once per commit. An
   * empty commit writes nothing and returns `[]`.
   *
   * @returns one version per operation, in op order
   * @throws {KvError} `Unsupported` when `capabilities.commit` is false, for
   *   more operations than `maxOps` and for a `putWithTtl` where TTLs are
   *   not supported (before any I/O); `ValueTooLarge` for more value bytes
   *   than `maxBytes` or one value over `maxValueBytes`; `InvalidKey`,
   *   `InvalidArgument` (a key twice, an unknown op, a bad TTL or version);
   *   `AlreadyExists`, `RevisionMismatch` (nothing written); `Indeterminate`
   *   when the outcome is unknown (all or nothing still holds)
   */
  commit(ops: readonly KvCommitOp[]): Promise<Version[]>;
}

/** Watches: state-sync or resumed streams of changes. */
export interface KvWatcher {
  /**
   * A stream of changes under `prefixes`.
   *
   * Without `from`: the current live value of every matching key, then one
   * `synced` marker, then live changes, with nothing lost in between. With
   * `from`: the changes after that cursor, then `synced`, then live changes;
   * fails with `CursorExpired` when the backend cannot prove that is gap-free.
   * Events arrive in cursor order. Reconnection is handled inside the watch.
   * Breaking out of the loop or aborting `signal` ends it and releases its
   * server-side resources.
   *
   * @throws {KvError} `InvalidKey`, `InvalidArgument`, `CursorExpired`, `Closed`
   */
  watch(options?: WatchOptions): AsyncIterable<WatchEvent>;
  /**
   * Orders two cursors of this bucket: negative, zero or positive.
   *
   * @throws {KvError} `InvalidArgument` for a string that is not a cursor of this backend
   */
  compareCursors(a: WatchCursor, b: WatchCursor): number;
}

/**
 * A handle on one bucket. Several handles on one bucket behave like several
 * clients of one server.
 */
export interface KvStore extends KvReader, KvWriter, KvWatcher, KvTtl, KvPurge, KvCommit, AsyncDisposable {
  /** The backend's name, e.g. `memory`, `nats`, `redis`, `fdb`. */
  readonly backend: string;
  /** The bucket this handle is bound to. */
  readonly bucket: string;
  readonly capabilities: KvCapabilities;
  /**
   * Closes the handle and whatever it opened itself (not a caller-owned
   * client). Running watches end with `Closed`; later calls throw `Closed`.
   * Idempotent.
   */
  close(): Promise<void>;
}
