import { randomBytes } from 'node:crypto';
import { type EventLog, MemoryFileSystem, nodeXChaCha, openEventLog, type SyncMode } from '@weft/eventlog';
import type { KvStore } from '@weft/kv';
import {
  createIdentity,
  type DeviceIdentity,
  decodeChangeset,
  decodeEnvelope,
  type LibraryConfig,
  openEnvelope,
  openSync,
  type Sync,
  type SyncOptions,
} from '@weft/sync';

export const kind = 0x1001;
export const bytes = (text: string) => new TextEncoder().encode(text);
export const text = (value: Uint8Array) => new TextDecoder().decode(value);

/** A library of `count` device identities sharing one key. */
export function makeLibrary(count: number, id = 'lib'): { identities: DeviceIdentity[]; library: LibraryConfig } {
  const identities = Array.from({ length: count }, () => createIdentity());
  return {
    identities,
    library: { id, key: randomBytes(32), members: identities.map(({ deviceId, publicKey }) => ({ deviceId, publicKey })) },
  };
}

export interface Device {
  readonly identity: DeviceIdentity;
  readonly fs: MemoryFileSystem;
  log: EventLog;
  sync: Sync;
  kv: KvStore;
}

/** Opens a device: an encrypted log on its own in-memory filesystem and sync on `kv`. */
export async function openDevice(
  identity: DeviceIdentity,
  library: LibraryConfig,
  kv: KvStore,
  options: Partial<SyncOptions> & { fs?: MemoryFileSystem; logSync?: SyncMode } = {},
): Promise<Device> {
  const { logSync, ...syncOptions } = options;
  const fs = options.fs ?? new MemoryFileSystem();
  const log = await openEventLog({ dir: '/device', fs, sync: logSync ?? 'group', encryption: {} });
  const sync = await openSync({ log, kv, identity, library, live: false, ...syncOptions });
  return { identity, fs, log, sync, kv };
}

/** The events of a log as comparable strings, sorted by id (logs converge as sets). */
export async function eventSet(log: EventLog): Promise<string[]> {
  const events: string[] = [];
  for await (const event of log.read())
    events.push(`${event.id}|${event.entity}|${event.kind}|${event.time}|${text(event.payload)}|${event.parents.join(',')}`);
  return events.sort();
}

/** Every event id in a device's changesets in the store, in seq order, opened with the library key (out-of-band library 'lib'). */
export async function pushedBy(kv: KvStore, device: string, key: Uint8Array): Promise<string[]> {
  const ids: string[] = [];
  for (let seq = 1; ; seq++) {
    const keyPath = `changes.${device}.${seq}`;
    const entry = await kv.get(keyPath);
    if (entry === undefined) return ids;
    const body = openEnvelope(decodeEnvelope(entry.value), key, 'lib', keyPath, nodeXChaCha);
    if (body === undefined) throw new Error(`${keyPath} does not open`);
    for (const event of decodeChangeset(body)) ids.push(event.id);
  }
}
