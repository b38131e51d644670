import type { KvError } from '@weft/kv';
import { type ChangeFeedItem, type ChangeRequest, KvErrorCode, keyMatchesAnyPrefix, kvError, pause } from '@weft/kv/backend';
import { type FdbDriver, listPage, maxCommitOps } from './driver.js';
import { decodeLogEntry, decodeVersionValue, fromHex, stampBytes, toHex } from './layout.js';
import { backend, runRead } from './transactions.js';
import type { FdbTransaction } from './transactor.js';

/** Log entries per watch transaction. */
const logBatch = 256;
/** Value bytes one watch transaction reads before it stops its batch early. */
const batchValueBytes = 4 * 1024 * 1024;
/** A caught-up watch re-reads the log at least this often, even if its FDB watch never fires. */
const idleRecheckMs = 5000;

interface Bounds {
  readonly head: Buffer;
  readonly horizon: Buffer;
}

interface LogBatch {
  readonly bounds: Bounds;
  /** Changes, and the positions of entries passed over (other prefixes, puts overwritten since). */
  readonly items: Array<Extract<ChangeFeedItem<Buffer>, { type: 'change' | 'through' }>>;
  /** Set when the batch was empty: an FDB watch on the head key, active since the batch's read. */
  readonly wait: { promise: Promise<boolean>; cancel(): void } | undefined;
}

/**
 * The feed of one watch: the state-sync listing (when not resuming), then
 * the change log after it in short transactions; a transaction that finds
 * nothing new arms an FDB watch on the head key in the same transaction, so
 * no change can slip between the read and the wait.
 */
export async function* changeFeed(
  driver: FdbDriver,
  { from, prefixes, signal }: ChangeRequest<Buffer>,
): AsyncGenerator<ChangeFeedItem<Buffer>> {
  let wait: LogBatch['wait'];
  try {
    let position: Buffer;
    let batch: LogBatch;
    if (from === undefined) {
      position = yield* stateSync(driver, prefixes, signal);
      // The first batch arms its FDB watch before `synced` is delivered, so the watch holds it from then on.
      batch = await readLog(driver, position, prefixes);
      wait = batch.wait;
      yield { type: 'through', position };
    } else {
      position = from;
      batch = await readLog(driver, position, prefixes);
      wait = batch.wait;
    }
    for (;;) {
      if (signal.aborted) return;
      yield { type: 'bounds', epoch: '', reading: position, head: batch.bounds.head, horizon: batch.bounds.horizon };
      for (const item of batch.items) {
        position = item.position;
        if (item.type === 'change') yield item;
      }
      if (wait !== undefined) {
        yield { type: 'through', position };
        await waitForChange(wait, signal);
        wait.cancel();
        wait = undefined;
      }
      if (signal.aborted) return;
      batch = await readLog(driver, position, prefixes);
      wait = batch.wait;
    }
  } finally {
    wait?.cancel();
  }
}

export function bucketGone(bucket: string): KvError {
  return kvError(KvErrorCode.CursorExpired, backend, `bucket '${bucket}' was removed while in use; re-list`);
}

async function readBounds(driver: FdbDriver, tn: FdbTransaction): Promise<Bounds> {
  const [head, horizon] = await Promise.all([tn.get(driver.layout.head), tn.get(driver.layout.horizon)]);
  const decodedHead = decodeVersionValue(head, 'head');
  const decodedHorizon = decodeVersionValue(horizon, 'horizon');
  if (decodedHead === undefined || decodedHorizon === undefined) throw bucketGone(driver.bucket);
  return { head: decodedHead, horizon: decodedHorizon };
}

/**
 * One short transaction of the change log after `position`, with the bounds:
 * the entries, with the values of puts read in the same transaction (a put
 * whose record has moved on is passed over: its later change follows in the
 * log). When the log has nothing new, the transaction also sets an FDB watch
 * on the head.
 */
async function readLog(driver: FdbDriver, position: Buffer, prefixes: readonly string[] | undefined): Promise<LogBatch> {
  const layout = driver.layout;
  return runRead(
    driver,
    'watch',
    undefined,
    async (tn) => {
      const bounds = await readBounds(driver, tn);
      const rows = await tn.getRange(layout.logAfter(position), layout.logEnd(), { limit: logBatch });
      // The changes of one transaction (a commit's) are read together: whether a put is still current is then
      // decided for all of them at once, so a reader never delivers part of a commit and passes over the rest.
      const stampOf = (row: (typeof rows)[number]) => layout.logVersion(row[0]).subarray(0, stampBytes);
      const last = rows.at(-1);
      if (rows.length === logBatch && last !== undefined) {
        const more = await tn.getRange(layout.logAfter(layout.logVersion(last[0])), layout.logEnd(), { limit: 2 * maxCommitOps });
        for (const row of more) {
          if (!stampOf(row).equals(stampOf(last))) break;
          rows.push(row);
        }
      }
      const items: LogBatch['items'] = [];
      let valueBytes = 0;
      for (const [index, [logKey, entry]] of rows.entries()) {
        const version = Buffer.from(layout.logVersion(logKey));
        const { op, key } = decodeLogEntry(entry);
        // Passed over: the feed's position still moves past it, but nothing is delivered.
        const passed = { type: 'through', position: version } as const;
        if (!keyMatchesAnyPrefix(key, prefixes)) {
          items.push(passed);
          continue;
        }
        const cursor = toHex(version);
        if (op === 'put') {
          const found = await driver.readRecord(tn, key, true);
          if (found === undefined || !found.record.version.equals(version)) {
            items.push(passed);
            continue;
          }
          const value = found.value ?? new Uint8Array(0);
          items.push({ type: 'change', position: version, key, op: 'put', value, version: cursor });
          valueBytes += value.byteLength;
          const next = rows[index + 1];
          if (valueBytes > batchValueBytes && (next === undefined || !stampOf(next).equals(stampOf(rows[index] as (typeof rows)[number]))))
            break;
        } else if (op === 'expire') {
          items.push({ type: 'change', position: version, key, op: 'expire' });
        } else {
          items.push({ type: 'change', position: version, key, op, version: cursor });
        }
      }
      if (rows.length > 0) return { bounds, items, wait: undefined };
      const wait = tn.watch(layout.head);
      wait.promise.catch(() => undefined);
      try {
        await tn.commit();
      } catch (error) {
        wait.cancel();
        throw error;
      }
      return { bounds, items, wait };
    },
    true,
  );
}

async function waitForChange(wait: { promise: Promise<boolean> }, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return;
  let timer: NodeJS.Timeout | undefined;
  let onAbort: (() => void) | undefined;
  try {
    await Promise.race([
      wait.promise.catch(() => pause(100)),
      new Promise<void>((resolve) => {
        timer = setTimeout(resolve, idleRecheckMs);
        onAbort = resolve;
        signal.addEventListener('abort', onAbort, { once: true });
      }),
    ]);
  } finally {
    clearTimeout(timer);
    if (onAbort !== undefined) signal.removeEventListener('abort', onAbort);
  }
}

/**
 * The state-sync listing. Records are listed in several short transactions
 * starting at head S; the log from S to the head E read after the listing
 * then patches every key that changed meanwhile, so the result is the live
 * state as of E, delivered in version order. Returns E, where `synced` falls.
 */
async function* stateSync(
  driver: FdbDriver,
  prefixes: readonly string[] | undefined,
  signal: AbortSignal,
): AsyncGenerator<ChangeFeedItem<Buffer>, Buffer> {
  const layout = driver.layout;
  for (let attempt = 0; ; attempt++) {
    const start = (await runRead(driver, 'watch', undefined, (tn) => readBounds(driver, tn))).head;
    const versions = new Map<string, Buffer>();
    // The same pages keys() reads, one short transaction each.
    for (const prefix of prefixes ?? [undefined]) {
      for await (const entry of driver.list(prefix, { values: false })) {
        if (signal.aborted) return start;
        versions.set(entry.key, fromHex(entry.version, 'version'));
      }
    }
    // Patch with what changed while listing: the log from the listing's start to the head now.
    let position = start;
    let end: Buffer | undefined;
    let trimmed = false;
    for (;;) {
      if (signal.aborted) return start;
      const step = await runRead(driver, 'watch', undefined, async (tn) => {
        const bounds = await readBounds(driver, tn);
        if (Buffer.compare(position, bounds.horizon) < 0) return undefined;
        const rows = await tn.getRange(layout.logAfter(position), layout.logEnd(), { limit: 1000 });
        return { head: bounds.head, rows };
      });
      if (step === undefined) {
        trimmed = true;
        break;
      }
      end ??= step.head;
      for (const [logKey, entry] of step.rows) {
        const version = Buffer.from(layout.logVersion(logKey));
        if (Buffer.compare(version, end) > 0) break;
        position = version;
        const { op, key } = decodeLogEntry(entry);
        if (!keyMatchesAnyPrefix(key, prefixes)) continue;
        if (op === 'put') versions.set(key, version);
        else versions.delete(key);
      }
      if (step.rows.length < 1000 || Buffer.compare(position, end) >= 0) break;
    }
    if (trimmed || end === undefined) {
      // Retention trimmed the log under a very long listing: list again from a fresh start.
      if (attempt < 3) continue;
      throw kvError(KvErrorCode.CursorExpired, backend, 'the change log was trimmed faster than the bucket could be listed');
    }
    const ordered = [...versions].sort(([, a], [, b]) => Buffer.compare(a, b));
    for (let index = 0; index < ordered.length; index += listPage) {
      if (signal.aborted) return end;
      const slice = ordered.slice(index, index + listPage);
      const found = await runRead(driver, 'watch', undefined, async (tn) =>
        Promise.all(slice.map(([key]) => driver.readRecord(tn, key, true))),
      );
      for (const [offset, [key, version]] of slice.entries()) {
        const current = found[offset];
        // Changed after E: the log after `synced` delivers the newer state.
        if (current === undefined || current.record.op !== 'put' || !current.record.version.equals(version)) continue;
        const cursor = toHex(version);
        yield { type: 'change', position: version, key, op: 'put', value: current.value ?? new Uint8Array(0), version: cursor };
      }
    }
    return end;
  }
}
