/**
 * A browser device of the notes library, in a dedicated worker (OPFS sync
 * access handles exist only there): its identity and its encrypted event log
 * on the Origin Private File System, sync through NATS over WebSocket. The
 * page talks to it with messages `{ id, method, args }` and gets
 * `{ id, result }` or `{ id, error }` back, and `{ status }` whenever the
 * sync status changes.
 */
import { type EventLog, FileSystemError, type LogFileSystem, openEventLog, opfsFileSystem } from '@weft/eventlog';
import type { KvStore } from '@weft/kv';
import { openNatsKv } from '@weft/kv-nats';
import {
  createIdentity,
  type DeviceIdentity,
  identityFromPrivateKey,
  invitationOf,
  type LibraryConfig,
  lwwSet,
  openSync,
  projectLww,
  type Sync,
  type SyncStatus,
} from '@weft/sync';

const hex = (bytes: Uint8Array) => Array.from(bytes, (byte) => byte.toString(16).padStart(2, '0')).join('');
const fromHex = (text: string) => new Uint8Array((text.match(/../g) ?? []).map((pair) => Number.parseInt(pair, 16)));
const encoder = new TextEncoder();
const decoder = new TextDecoder();

interface Device {
  readonly fs: LogFileSystem;
  readonly name: string;
  identity: DeviceIdentity;
  kv?: KvStore;
  log?: EventLog;
  sync?: Sync;
}

let device: Device | undefined;

/**
 * The device's identity: its private key kept in OPFS beside its log, made on
 * first use. Anyone who can run script in this origin can read it (see
 * docs/guides/browser.md).
 */
async function loadIdentity(fs: LogFileSystem, name: string): Promise<DeviceIdentity> {
  await fs.mkdir(name);
  const path = `${name}/identity.key`;
  if (await fs.exists(path)) {
    const file = await fs.open(path, { readOnly: true });
    try {
      return identityFromPrivateKey(await file.read(0, 32));
    } finally {
      await file.close();
    }
  }
  const identity = createIdentity();
  const file = await fs.open(`${path}.tmp`, { create: true });
  try {
    await file.write(identity.privateKey, 0);
    await file.sync();
  } finally {
    await file.close();
  }
  await fs.rename(`${path}.tmp`, path);
  return identity;
}

function summary(status: SyncStatus) {
  return {
    device: status.device,
    keyGeneration: status.keyGeneration,
    pendingUploads: status.pendingUploads,
    lastError: status.lastError,
    alarms: status.alarms.map((alarm) => alarm.code),
    removed: status.removed !== undefined,
    devices: Object.keys(status.devices).length,
  };
}

async function eventCount(log: EventLog): Promise<number> {
  let count = 0;
  for await (const _event of log.readEntity('map/notes')) count++;
  return count;
}

const methods = {
  /** Loads (or makes) this tab's identity; returns its invitation, public keys only, as hex. */
  async identity(name: string) {
    const fs = opfsFileSystem();
    const identity = await loadIdentity(fs, name);
    device = { fs, name, identity };
    const invitation = invitationOf(identity);
    return { deviceId: invitation.deviceId, publicKey: hex(invitation.publicKey), x25519PublicKey: hex(invitation.x25519PublicKey) };
  },

  /** Opens the log and starts syncing; returns how many notes events the log held when it opened. */
  async start(options: { servers: string; bucket: string; library: { id: string; founder: { deviceId: string; publicKey: string } } }) {
    if (device === undefined) throw new Error('call identity first');
    const library: LibraryConfig = {
      id: options.library.id,
      founder: { deviceId: options.library.founder.deviceId, publicKey: fromHex(options.library.founder.publicKey) },
    };
    device.log = await openEventLog({ dir: `${device.name}/log`, fs: device.fs, encryption: {} });
    const eventsAtOpen = await eventCount(device.log);
    device.kv = await openNatsKv({ servers: options.servers, bucket: options.bucket });
    device.sync = await openSync({ log: device.log, kv: device.kv, identity: device.identity, library, pollIntervalMs: 500 });
    device.sync.onStatus((status) => postMessage({ status: summary(status) }));
    return { eventsAtOpen };
  },

  async add(key: string, text: string) {
    if (device?.log === undefined) throw new Error('not started');
    await lwwSet(device.log, 'notes', key, encoder.encode(text));
  },

  async notes() {
    if (device?.log === undefined) throw new Error('not started');
    const { entries } = await projectLww(device.log, 'notes');
    return [...entries].map(([key, value]) => [key, decoder.decode(value)]).sort();
  },

  async status() {
    if (device?.sync === undefined) throw new Error('not started');
    return summary(device.sync.status());
  },

  async waitUntilCaughtUp(timeoutMs: number) {
    if (device?.sync === undefined) throw new Error('not started');
    await device.sync.waitUntilCaughtUp({ timeoutMs });
  },

  /** Whether `needle` appears in any file this device keeps in OPFS (its log is encrypted: it should not). */
  async scan(needle: string) {
    if (device === undefined) throw new Error('call identity first');
    const wanted = encoder.encode(needle);
    const found: string[] = [];
    for (const dir of [device.name, `${device.name}/log`]) {
      for (const name of await device.fs.readdir(dir)) {
        const path = `${dir}/${name}`;
        if (name === 'log') continue;
        let file: Awaited<ReturnType<LogFileSystem['open']>>;
        try {
          file = await device.fs.open(path, { readOnly: true });
        } catch (error) {
          // Renamed away since the listing (a state save's temporary file): its bytes are in the file it became.
          if (error instanceof FileSystemError && error.code === 'ENOENT') continue;
          throw error;
        }
        try {
          const bytes = await file.read(0, await file.size());
          if (indexOf(bytes, wanted) >= 0) found.push(path);
        } finally {
          await file.close();
        }
      }
    }
    return found;
  },

  async close() {
    await device?.sync?.close();
    await device?.log?.close();
    await device?.kv?.close();
    device = undefined;
  },
};

function indexOf(haystack: Uint8Array, needle: Uint8Array): number {
  outer: for (let at = 0; at + needle.length <= haystack.length; at++) {
    for (let index = 0; index < needle.length; index++) if (haystack[at + index] !== needle[index]) continue outer;
    return at;
  }
  return -1;
}

type Method = keyof typeof methods;

addEventListener('message', (event: MessageEvent<{ id: number; method: Method; args: unknown[] }>) => {
  const { id, method, args } = event.data;
  const run = methods[method] as (...values: unknown[]) => Promise<unknown>;
  run(...args).then(
    (result) => postMessage({ id, result }),
    (error: unknown) => postMessage({ id, error: error instanceof Error ? `${error.name}: ${error.message}` : String(error) }),
  );
});
