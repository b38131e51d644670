import { KvError, KvErrorCode, kvError } from '../errors.js';
import { keyMatchesAnyPrefix } from '../keys.js';
import type { WatchEvent } from '../types.js';
import type { ChangeFeedItem, KvDriver, ParsedCursor } from './driver.js';
import { ttlLapsed } from './util.js';

/** What {@link runWatch} needs besides the driver. */
export interface WatchRun<Position> {
  readonly prefixes: readonly string[] | undefined;
  readonly from: ParsedCursor<Position> | undefined;
  readonly signal: AbortSignal;
  /** Throws `Closed` once the handle is closed; called when the watch ends by abort. */
  readonly assertOpen: () => void;
}

/**
 * The one watch loop of the contract, over a driver's change feed:
 *
 * - a watch without `from` delivers the listing's live values (tombstones
 *   and lapsed TTLs left out), then `synced`, then every change;
 * - a watch with `from` delivers the changes after it, then `synced` once
 *   the feed has caught up with the head read at its start or passed it (a
 *   steady stream of writes cannot hold `synced` back), then live changes;
 * - a position the feed reads after that lies below the horizon or past the
 *   head, or an epoch other than the watch's, fails with `CursorExpired`;
 * - events are filtered by prefix and arrive in strictly increasing cursor
 *   order: a feed that goes back (a driver bug) fails the watch loudly;
 * - abort or `break` end the feed (its `finally` releases server resources);
 *   an abort by `close()` ends the watch with `Closed`.
 */
export async function* runWatch<Position>(driver: KvDriver<Position>, run: WatchRun<Position>): AsyncGenerator<WatchEvent> {
  const { prefixes, from, signal } = run;
  const { cursors, backend } = driver;
  const now = driver.now === undefined ? Date.now : () => (driver.now as () => number)();
  const listing = from === undefined;
  let epoch = from?.epoch;
  let head: Position | undefined;
  let synced = false;
  let last: Position | undefined = from?.position;
  const syncedEvent = (at: Position | undefined): WatchEvent => {
    const position = at === undefined ? head : head === undefined || cursors.compare(at, head) >= 0 ? at : head;
    if (position === undefined) throw kvError(KvErrorCode.OperationFailed, backend, 'the change feed reported no position to be synced at');
    synced = true;
    return { type: 'synced', cursor: cursors.format(position, epoch ?? '') };
  };
  run.assertOpen();
  try {
    const feed = driver.changes({ from: from?.position, prefixes, signal });
    // A feed's single items pass through this one-slot array, so both shapes share the loop without an allocation.
    const single: ChangeFeedItem<Position>[] = [];
    reading: for await (const read of feed as AsyncIterable<ChangeFeedItem<Position> | readonly ChangeFeedItem<Position>[]>) {
      let items = read as readonly ChangeFeedItem<Position>[];
      if (!Array.isArray(read)) {
        single[0] = read as ChangeFeedItem<Position>;
        items = single;
      }
      for (const item of items) {
        if (signal.aborted) break reading;
        if (item.type === 'bounds') {
          if (epoch === undefined) epoch = item.epoch;
          else if (item.epoch !== epoch) {
            throw kvError(
              KvErrorCode.CursorExpired,
              backend,
              `bucket '${driver.bucket}' was recreated or lost its data since this watch's cursor was issued; re-list`,
            );
          }
          if (item.reading !== undefined) assertResumable(driver, item.reading, item.head, item.horizon, epoch, item.lost === true);
          if (!synced && head === undefined) head = item.head;
          continue;
        }
        if (item.type === 'through') {
          if (!synced) yield syncedEvent(item.position);
          continue;
        }
        if (last !== undefined && cursors.compare(item.position, last) <= 0) {
          // Delivering it would break cursor order, and skipping it could lose a change: a driver bug, said out loud.
          throw kvError(
            KvErrorCode.OperationFailed,
            backend,
            `the change feed went back from ${cursors.format(last, epoch ?? '')} to ${cursors.format(item.position, epoch ?? '')}`,
          );
        }
        // Everything up to the head read at the start has been delivered once a later change shows up.
        if (!synced && head !== undefined && cursors.compare(item.position, head) > 0) yield syncedEvent(undefined);
        last = item.position;
        if (!keyMatchesAnyPrefix(item.key, prefixes)) continue;
        // The listing shows live values only: tombstones and lapsed TTLs up to its snapshot are not changes.
        if (listing && !synced && (item.op !== 'put' || ttlLapsed(item.expiresAt, now()))) {
          continue;
        }
        if (signal.aborted) break reading;
        yield eventOf(item, cursors.format(item.position, epoch ?? ''));
      }
    }
  } catch (error) {
    if (signal.aborted && !KvError.is(error)) return run.assertOpen();
    if (KvError.is(error)) throw error;
    throw (
      driver.toKvError?.(error, 'watch') ??
      kvError(KvErrorCode.OperationFailed, backend, `watch failed: ${messageOf(error)}`, { cause: error })
    );
  }
  run.assertOpen();
}

function assertResumable<Position>(
  driver: KvDriver<Position>,
  reading: Position,
  head: Position | undefined,
  horizon: Position | undefined,
  epoch: string,
  lost: boolean,
): void {
  const { cursors, backend } = driver;
  if (lost) {
    throw kvError(
      KvErrorCode.CursorExpired,
      backend,
      `bucket '${driver.bucket}' no longer holds the change at cursor ${cursors.format(reading, epoch)}: the server lost writes it had acknowledged (a failover to a replica without them, or a restart from an older copy); re-list`,
    );
  }
  if (horizon !== undefined && cursors.compare(reading, horizon) < 0) {
    throw kvError(
      KvErrorCode.CursorExpired,
      backend,
      `changes after cursor ${cursors.format(reading, epoch)} are no longer retained (horizon ${cursors.format(horizon, epoch)}); re-list`,
    );
  }
  if (head !== undefined && cursors.compare(reading, head) > 0) {
    throw kvError(
      KvErrorCode.CursorExpired,
      backend,
      `cursor ${cursors.format(reading, epoch)} is ahead of bucket '${driver.bucket}' (head ${cursors.format(head, epoch)}): it is not from this bucket; re-list`,
    );
  }
}

function eventOf<Position>(item: Extract<ChangeFeedItem<Position>, { type: 'change' }>, cursor: WatchEvent['cursor']): WatchEvent {
  switch (item.op) {
    case 'put':
      return { type: 'put', key: item.key, value: item.value ?? new Uint8Array(0), version: item.version as never, cursor };
    case 'expire':
      return { type: 'expire', key: item.key, cursor };
    default:
      return { type: item.op, key: item.key, version: item.version as never, cursor };
  }
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
