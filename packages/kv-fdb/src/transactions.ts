import { KvError } from '@weft/kv';
import { KvErrorCode, kvError, messageOf } from '@weft/kv/backend';
import {
  type FdbDatabase,
  FdbErrorCode,
  type FdbTransaction,
  fdbErrorCode,
  fdbErrorNames,
  isMaybeCommitted,
  isRetryable,
} from './transactor.js';

export const backend = 'fdb';

/** What the transaction runners need of a handle. */
export interface TransactionContext {
  readonly db: FdbDatabase;
  readonly bucket: string;
  readonly transactionTimeoutMs: number;
  readonly maxRetries: number;
  /** True once the handle closed: failures then read as `Closed`. */
  readonly closed: boolean;
}

/** What a write transaction's body decides: whether to commit, and how to turn the versionstamp (if any) into the result. */
export interface WriteStep<T> {
  readonly commit: boolean;
  readonly stamp?: Promise<Buffer>;
  readonly finish: (stamp: Buffer | undefined) => T;
}

export function done<T>(result: T, commit = false): WriteStep<T> {
  return { commit, finish: () => result };
}

/** A new transaction with the handle's timeout; a failure to create one is a typed error. */
function openTransaction(context: TransactionContext, operation: string, key: string | undefined): FdbTransaction {
  try {
    return context.db.createTransaction({ timeoutMs: context.transactionTimeoutMs });
  } catch (error) {
    throw toKvError(context, error, operation, key, false, false);
  }
}

/**
 * Runs a read-only transaction, retrying what FoundationDB says is
 * retryable. With `commits`, the body commits itself (to arm a watch).
 */
export async function runRead<T>(
  context: TransactionContext,
  operation: string,
  key: string | undefined,
  body: (tn: FdbTransaction) => Promise<T>,
  commits = false,
): Promise<T> {
  const tn = openTransaction(context, operation, key);
  try {
    for (let attempt = 0; ; attempt++) {
      try {
        return await body(tn);
      } catch (error) {
        if (KvError.is(error) || !isRetryable(error) || attempt >= context.maxRetries) throw error;
        await tn.onError(error);
      }
    }
  } catch (error) {
    if (commits) tn.cancel();
    throw toKvError(context, error, operation, key, false, false);
  } finally {
    if (!commits) tn.cancel();
  }
}

/**
 * Runs a write transaction with FoundationDB's retry loop. After a
 * `commit_unknown_result` the body runs again told so, and checks its write
 * id first; if the retries run out after one, the outcome is `Indeterminate`.
 */
export async function runWrite<T>(
  context: TransactionContext,
  operation: string,
  key: string | undefined,
  body: (tn: FdbTransaction, retryingUnknown: boolean) => Promise<WriteStep<T>>,
): Promise<T> {
  const tn = openTransaction(context, operation, key);
  let unknown = false;
  for (let attempt = 0; ; attempt++) {
    let committing = false;
    try {
      const step = await body(tn, unknown);
      if (!step.commit) {
        tn.cancel();
        return step.finish(undefined);
      }
      committing = true;
      await tn.commit();
      return step.finish(step.stamp === undefined ? undefined : await step.stamp);
    } catch (error) {
      if (KvError.is(error)) {
        tn.cancel();
        throw error;
      }
      if (isMaybeCommitted(error) || (committing && fdbErrorCode(error) === FdbErrorCode.transactionTimedOut)) unknown = true;
      try {
        if (!isRetryable(error) || attempt >= context.maxRetries) throw error;
        await tn.onError(error);
      } catch (final) {
        tn.cancel();
        throw toKvError(context, final, operation, key, true, unknown);
      }
    }
  }
}

/** Maps a FoundationDB failure to a typed error; a write that may have committed is `Indeterminate`. */
export function toKvError(
  context: TransactionContext,
  error: unknown,
  operation: string,
  key: string | undefined,
  isWrite: boolean,
  maybeCommitted: boolean,
): KvError {
  if (KvError.is(error)) return error;
  if (context.closed) {
    return kvError(KvErrorCode.Closed, backend, `the handle on bucket '${context.bucket}' is closed`, { key, cause: error });
  }
  const code = fdbErrorCode(error);
  const name = code === undefined ? undefined : (fdbErrorNames[code] ?? `error ${code}`);
  const extra = { key, cause: error };
  if (isWrite && maybeCommitted) {
    return kvError(
      KvErrorCode.Indeterminate,
      backend,
      `${operation}: the commit's outcome is unknown (${name ?? messageOf(error)}); the write may or may not have been applied`,
      extra,
    );
  }
  if (code === FdbErrorCode.transactionTimedOut) {
    return kvError(
      KvErrorCode.Timeout,
      backend,
      `${operation}: FoundationDB did not answer within ${context.transactionTimeoutMs} ms; nothing was written`,
      extra,
    );
  }
  if (code === FdbErrorCode.transactionTooLarge || code === FdbErrorCode.valueTooLarge || code === FdbErrorCode.keyTooLarge) {
    return kvError(KvErrorCode.OperationFailed, backend, `${operation}: FoundationDB refused the transaction (${name})`, extra);
  }
  return kvError(KvErrorCode.OperationFailed, backend, `${operation} failed: ${name ?? messageOf(error)}`, extra);
}
