import { KvError, keyMatchesPrefix, type Version } from '@weft/kv';
import { backoffMs, type ChangeFeedItem, type ChangeRequest, copyBytes, KvErrorCode, kvError, pause, readTimeout } from '@weft/kv/backend';
import { redisScript, type Waker } from './connection.js';
import { type RedisDriver, watchBlockMs } from './driver.js';
import { backend, toKvError } from './errors.js';
import { readChangesScript } from './scripts.js';
import { compareStreamIds } from './stream-ids.js';

const readChangesLua = redisScript(readChangesScript);
const pageSize = 500;
const readBatch = 256;

interface StreamHead {
  readonly epoch: string;
  readonly lastId: string;
  /** Positions below this may have lost changes to trimming. */
  readonly horizon: string;
  /** The entry at the position read after is gone although it lies above the horizon. */
  readonly lost: boolean;
}

interface Change {
  readonly id: string;
  readonly key: string;
  readonly type: 'p' | 'd' | 'x' | 'e' | 's';
  readonly value: Buffer;
}

/**
 * The feed of one watch: the state-sync listing at the stream's head (when
 * not resuming), then the change stream after it, read by a script on the
 * main connection; a connection of the watch's own sits in `XREAD BLOCK`
 * only to wake it.
 */
export async function* changeFeed(
  driver: RedisDriver,
  { from, prefixes, signal }: ChangeRequest<string>,
): AsyncGenerator<ChangeFeedItem<string> | ChangeFeedItem<string>[]> {
  // The waker is replaced when a wait outlives its deadline (its connection may be stuck on a paused or vanished
  // server); every read goes through the main connection with its own deadline.
  let waker = driver.waker();
  driver.wakers.add(waker);
  const stopWaker = () => waker.disconnect();
  signal.addEventListener('abort', stopWaker, { once: true });
  const replaceWaker = () => {
    driver.wakers.delete(waker);
    waker.disconnect();
    if (signal.aborted || driver.closed) return;
    waker = driver.waker();
    driver.wakers.add(waker);
  };
  try {
    let position: string;
    if (from === undefined) {
      const start = await readChanges(driver, '0-0', signal, 0);
      if (start === undefined) return;
      position = start.head.lastId;
      yield { type: 'bounds', epoch: start.head.epoch, head: position };
      yield* listing(driver, prefixes, position, signal);
    } else {
      position = from;
    }
    let caughtUp = false;
    for (;;) {
      if (signal.aborted) return;
      const batch = await readChanges(driver, position, signal);
      if (batch === undefined) return;
      const { head } = batch;
      // One read, one step of the feed: its bounds and its changes together.
      const items: ChangeFeedItem<string>[] = [
        { type: 'bounds', epoch: head.epoch, reading: position, head: head.lastId, horizon: head.horizon, lost: head.lost },
      ];
      for (const change of batch.changes) {
        position = change.id;
        if (change.type !== 's') items.push(itemOf(change));
      }
      yield items;
      // A short batch means the stream had nothing more: wait at once (XREAD returns at once if something came
      // meanwhile) instead of spending a round trip on a read that would come back empty.
      if (batch.changes.length < readBatch) {
        // Once caught up, `through` means nothing more to the loop; not yielding it again keeps the wait on the
        // same step as the consumer's next read (the blocking XREAD goes out before a write the consumer makes).
        if (!caughtUp) {
          caughtUp = true;
          yield { type: 'through', position: compareStreamIds(position, head.lastId) < 0 ? head.lastId : position };
        }
        const woken = await waitForChange(driver, waker, position, signal);
        if (!woken) replaceWaker();
      }
    }
  } finally {
    signal.removeEventListener('abort', stopWaker);
    driver.wakers.delete(waker);
    waker.disconnect();
  }
}

/** The state-sync listing as of `snapshot`: live records written at or before it, in version order. */
async function* listing(
  driver: RedisDriver,
  prefixes: readonly string[] | undefined,
  snapshot: string,
  signal: AbortSignal,
): AsyncGenerator<ChangeFeedItem<string>> {
  const { record } = driver.keys;
  const candidates: Array<{ key: string; version: string }> = [];
  for (const prefix of prefixes ?? [undefined]) {
    for await (const page of indexPages(driver, prefix)) {
      if (signal.aborted) return;
      const rows = await driver.hashFieldsOfMany(
        page.map((key) => record + key),
        ['o', 'n'],
        false,
      );
      page.forEach((key, index) => {
        const [op, version] = (rows[index] ?? []) as Array<string | null>;
        if (op === 'p' && version != null && compareStreamIds(version, snapshot) <= 0) candidates.push({ key, version });
      });
    }
  }
  candidates.sort((a, b) => compareStreamIds(a.version, b.version));
  for (let start = 0; start < candidates.length; start += pageSize) {
    if (signal.aborted) return;
    const slice = candidates.slice(start, start + pageSize);
    const rows = await driver.hashFieldsOfMany(
      slice.map(({ key }) => record + key),
      ['n', 'v'],
      true,
    );
    for (const [index, { key, version }] of slice.entries()) {
      const [current, value] = (rows[index] ?? []) as Array<Buffer | null>;
      // Changed since the snapshot: the change stream delivers the newer state after `synced`.
      if (current?.toString() !== version || value == null) continue;
      yield { type: 'change', position: version, key, op: 'put', value: copyBytes(value), version: version as Version };
    }
  }
}

/** Pages of the live-key index under a whole-token prefix. */
export async function* indexPages(driver: RedisDriver, prefix: string | undefined): AsyncGenerator<string[]> {
  // Whole-token prefix p: the keys in [p, p/) are p itself, p.* and p-* (filtered out below).
  let low = prefix === undefined ? '-' : `[${prefix}`;
  const high = prefix === undefined ? '+' : `(${prefix}/`;
  for (;;) {
    const page = await driver.read(undefined, () => driver.connection.rangeByLex(driver.keys.index, low, high, pageSize));
    const matching = page.filter((key) => keyMatchesPrefix(key, prefix));
    if (matching.length > 0) yield matching;
    if (page.length < pageSize) return;
    low = `(${page[page.length - 1]}`;
  }
}

/**
 * Reads changes after `position` with the stream's head, each attempt within
 * the handle's deadline, retrying through disconnects, restarts and pauses
 * until the watch ends; a server that has not answered for `watchOutageMs`
 * fails the watch with the last error.
 */
async function readChanges(
  driver: RedisDriver,
  position: string,
  signal: AbortSignal,
  count = readBatch,
): Promise<{ head: StreamHead; changes: Change[] } | undefined> {
  const { log, meta, record } = driver.keys;
  const { timeoutMs, watchOutageMs } = driver.settings;
  const failingSince = performance.now();
  for (let attempt = 0; ; attempt++) {
    if (signal.aborted) return undefined;
    try {
      const reply = (await driver.deadlines.within(
        driver.connection.runScript(readChangesLua, [log, meta], [position, String(count), record, driver.nextEpochCandidate()], true),
        () => readTimeout(backend, 'watch', timeoutMs),
      )) as Buffer[];
      const head = { epoch: text(reply[0]), lastId: text(reply[1]), horizon: text(reply[2]), lost: text(reply[3]) === '1' };
      const changes: Change[] = [];
      for (let index = 4; index + 3 < reply.length; index += 4) {
        changes.push({
          id: text(reply[index]),
          key: text(reply[index + 1]),
          type: text(reply[index + 2]) as Change['type'],
          value: reply[index + 3] ?? Buffer.alloc(0),
        });
      }
      return { head, changes };
    } catch (error) {
      const failure = toKvError(error, 'watch', undefined, false);
      if (!failure.retryable || driver.closed) throw failure;
      const outage = performance.now() - failingSince;
      if (outage >= watchOutageMs) {
        throw kvError(
          failure.code,
          backend,
          `watch: Redis has not answered for ${Math.round(outage)} ms (watchOutageMs ${watchOutageMs}); resume from the last cursor: ${failure.message}`,
          { cause: failure, retryable: true },
        );
      }
      await pause(backoffMs(attempt), signal);
    }
  }
}

/**
 * Waits until the stream may have an entry after `position`: the waker's
 * `XREAD BLOCK` returned, or its connection closed (a restart: the next read
 * finds out what changed). Returns false when the wait outlived its deadline
 * (the block plus the handle's timeout), so the caller replaces the waker.
 */
async function waitForChange(driver: RedisDriver, waker: Waker, position: string, signal: AbortSignal): Promise<boolean> {
  if (signal.aborted) return true;
  try {
    await driver.waitDeadlines.within(waker.waitForEntry(driver.keys.log, position, watchBlockMs), () =>
      readTimeout(backend, 'watch wait', driver.waitDeadlines.timeoutMs),
    );
    return true;
  } catch (error) {
    if (signal.aborted) return true;
    if (KvError.is(error) && error.code === KvErrorCode.Timeout) return false;
    // The next read retries through the disconnect and checks the epoch, so a reset cannot slip through.
    await pause(100, signal);
    if (toKvError(error, 'watch', undefined, false).retryable) return true;
    throw error;
  }
}

function itemOf(change: Change): ChangeFeedItem<string> {
  // Literals of one shape each, not spreads of a shared base: this runs once per change per watch.
  const { id, key } = change;
  switch (change.type) {
    case 'p':
      return { type: 'change', position: id, key, op: 'put', value: copyBytes(change.value), version: id as Version };
    case 'd':
      return { type: 'change', position: id, key, op: 'delete', version: id as Version };
    case 'x':
      return { type: 'change', position: id, key, op: 'purge', version: id as Version };
    default:
      return { type: 'change', position: id, key, op: 'expire' };
  }
}

function text(buffer: Buffer | undefined): string {
  return buffer === undefined || buffer === null ? '' : buffer.toString('latin1');
}
