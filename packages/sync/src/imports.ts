/**
 * Import batches are tagged in the log itself: each batch of events pulled
 * from other devices is appended with a label (`AppendOptions.label`) that
 * says how many events it holds. The sync state records which local positions were
 * imported (so they are never pushed as this device's own), and when it
 * lags the log (a crash between an append and the state's save), the log
 * past the state's scanned position is read again to rebuild it.
 */
import type { EventLog } from '@weft/eventlog';
import { addRange, type SyncStateData } from './state.js';

const prefix = 'weft-sync-import:';

/** The label of an import batch: its size and its first event id. */
export function importTag(count: number, firstEventId: string): string {
  return `${prefix}${count}:${firstEventId}`;
}

/** The size of the import batch a tag starts, or `undefined` for any other key. */
export function importCount(label: string | undefined): number | undefined {
  if (label === undefined || !label.startsWith(prefix)) return undefined;
  const count = Number(label.slice(prefix.length, label.indexOf(':', prefix.length)));
  return Number.isSafeInteger(count) && count >= 1 && count <= 0xffff ? count : undefined;
}

/**
 * Reads the log past `state.scannedPosition` and records every tagged import
 * batch there as imported.
 */
export async function recoverImports(log: EventLog, state: SyncStateData): Promise<void> {
  const durable = log.durableHead;
  for await (const event of log.read(state.scannedPosition + 1)) {
    const count = importCount(event.label);
    if (count === undefined) continue;
    addRange(state.imported, event.position, event.position + count - 1);
  }
  state.scannedPosition = Math.max(state.scannedPosition, durable);
}
