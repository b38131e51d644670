/**
 * The narrow transaction interface the FoundationDB backend is written
 * against: the subset of the `foundationdb` binding it uses, over raw byte
 * keys and values. Two implementations exist: the real binding (see
 * `binding.ts`) and the in-process simulation (`simulation.ts`), which runs
 * the backend's logic where no FoundationDB cluster is available.
 */

/** A pending FDB watch: `promise` resolves `true` when the key's value changed, `false` when cancelled. */
export interface FdbWatch {
  readonly promise: Promise<boolean>;
  cancel(): void;
}

/** Options of a range read. */
export interface FdbRangeOptions {
  readonly limit?: number;
  readonly reverse?: boolean;
}

/** One FoundationDB transaction: serializable, at most 5 s old, at most 10 MB of writes. */
export interface FdbTransaction {
  get(key: Buffer): Promise<Buffer | undefined>;
  /** Key-value pairs with `start <= key < end`, in key order (reversed with `reverse`). */
  getRange(start: Buffer, end: Buffer, options?: FdbRangeOptions): Promise<Array<[Buffer, Buffer]>>;
  set(key: Buffer, value: Buffer): void;
  clear(key: Buffer): void;
  /** Clears every key with `start <= key < end`. */
  clearRange(start: Buffer, end: Buffer): void;
  /** Sets `prefix ‖ versionstamp ‖ suffix` to `value`; the 10-byte versionstamp is filled in at commit. */
  setVersionstampedKey(prefix: Buffer, suffix: Buffer, value: Buffer): void;
  /** Sets `key` to `versionstamp ‖ suffix`; the 10-byte versionstamp is filled in at commit. */
  setVersionstampedValue(key: Buffer, suffix: Buffer): void;
  /** Watches `key`; the watch becomes active when this transaction commits. */
  watch(key: Buffer): FdbWatch;
  /** The transaction's 10-byte versionstamp; call before `commit`, it settles after it. */
  getVersionstamp(): Promise<Buffer>;
  commit(): Promise<void>;
  /** Resets the transaction for a retry when `error` is retryable (with backoff); rethrows it otherwise. */
  onError(error: unknown): Promise<void>;
  cancel(): void;
}

/** A database handle that creates transactions. */
export interface FdbDatabase {
  /** A fresh transaction; `timeoutMs` makes operations fail with `transaction_timed_out` (1031) after that long. */
  createTransaction(options?: { readonly timeoutMs?: number }): FdbTransaction;
  close(): void;
}

/** FoundationDB error codes the backend and the simulation use. */
export const FdbErrorCode = {
  transactionTooOld: 1007,
  futureVersion: 1009,
  notCommitted: 1020,
  commitUnknownResult: 1021,
  transactionCancelled: 1025,
  transactionTimedOut: 1031,
  tooManyWatches: 1032,
  accessedUnreadable: 1036,
  processBehind: 1037,
  databaseLocked: 1038,
  clusterVersionChanged: 1039,
  operationCancelled: 1101,
  tagThrottled: 1213,
  transactionTooLarge: 2101,
  keyTooLarge: 2102,
  valueTooLarge: 2103,
} as const;

/** An error carrying a FoundationDB error code, as the binding's `FDBError` does. */
export class FdbError extends Error {
  override readonly name = 'FDBError';
  readonly code: number;
  constructor(description: string, code: number) {
    super(description);
    this.code = code;
  }
}

/** The FDB error code of `error`, when it has one. */
export function fdbErrorCode(error: unknown): number | undefined {
  const code = (error as { code?: unknown } | null | undefined)?.code;
  return typeof code === 'number' ? code : undefined;
}

/** Codes after which a commit may or may not have been applied. */
const maybeCommitted: ReadonlySet<number> = new Set([FdbErrorCode.commitUnknownResult, FdbErrorCode.clusterVersionChanged]);

/** Codes after which retrying the whole transaction is safe (it did not commit) or needed. */
const retryable: ReadonlySet<number> = new Set([
  FdbErrorCode.transactionTooOld,
  FdbErrorCode.futureVersion,
  FdbErrorCode.notCommitted,
  FdbErrorCode.commitUnknownResult,
  FdbErrorCode.processBehind,
  FdbErrorCode.databaseLocked,
  FdbErrorCode.clusterVersionChanged,
  FdbErrorCode.tagThrottled,
]);

/** True when a commit that failed with `error` may nevertheless have been applied. */
export function isMaybeCommitted(error: unknown): boolean {
  const code = fdbErrorCode(error);
  return code !== undefined && maybeCommitted.has(code);
}

/** True when the transaction that failed with `error` may simply be run again. */
export function isRetryable(error: unknown): boolean {
  const code = fdbErrorCode(error);
  return code !== undefined && retryable.has(code);
}

/** FDB's own names for the codes above, for error messages. */
export const fdbErrorNames: Readonly<Record<number, string>> = Object.fromEntries(
  Object.entries(FdbErrorCode).map(([name, code]) => [code, name.replace(/[A-Z]/g, (letter) => `_${letter.toLowerCase()}`)]),
);
