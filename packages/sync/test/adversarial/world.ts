/**
 * The adversarial suite's world: a library in one bucket, honest devices
 * that each reach the store through their own {@link MaliciousStore}, and
 * an honest raw handle that attackers with write access to the bucket use
 * (members, removed members, the store operator). Backends: the memory
 * backend by default, spawned Redis and NATS servers for the real subset.
 */
import { type EventLog, loadHashers, MemoryFileSystem, nodeXChaCha, openEventLog, UuidV7Generator } from '@weft/eventlog';
import { createMemoryKvServer, type KvStore, openMemoryKv } from '@weft/kv';
import { openNatsKv } from '@weft/kv-nats';
import { openRedisKv } from '@weft/kv-redis';
import {
  createIdentity,
  createLibrary,
  type DeviceIdentity,
  encodeChangeset,
  type Invitation,
  invitationOf,
  type LibraryConfig,
  openSync,
  type Role,
  type Sync,
  type SyncedEvent,
  sealEnvelope,
} from '@weft/sync';
import { natsUnavailable, redisUnavailable, startNatsServer, startRedisServer } from '@weft/test-servers';
import { expect, it } from 'vitest';
import { MaliciousStore } from './malicious-store.js';

export const kind = 0x1001;
export const bytes = (text: string) => new TextEncoder().encode(text);
const text = (value: Uint8Array) => new TextDecoder().decode(value);

/** Where the bucket lives. */
export interface Backend {
  readonly name: string;
  /** Why it cannot run here, or `undefined`. */
  readonly missing: string | undefined;
  /** Starts a server (once per file); `open(bucket)` gives a fresh handle. */
  start(): Promise<{ open: (bucket: string) => Promise<KvStore>; stop: () => Promise<void> }>;
}

export const memoryBackend: Backend = {
  name: 'memory',
  missing: undefined,
  start: async () => {
    const server = createMemoryKvServer();
    return { open: (bucket) => openMemoryKv({ server, bucket }), stop: async () => undefined };
  },
};

export const redisBackend: Backend = {
  name: 'redis',
  missing: redisUnavailable(),
  start: async () => {
    const server = await startRedisServer();
    return { open: (bucket) => openRedisKv({ url: server.url, bucket }), stop: () => server.stop() };
  },
};

export const natsBackend: Backend = {
  name: 'nats',
  missing: natsUnavailable(),
  start: async () => {
    const server = await startNatsServer();
    return { open: (bucket) => openNatsKv({ servers: server.url, bucket, create: { history: 1 } }), stop: () => server.stop() };
  },
};

/** The parts of `@weft/sync` a world runs its devices on: the package itself, or a mutated copy of its source. */
export type SyncImplementation = Pick<typeof import('@weft/sync'), 'createLibrary' | 'openSync'>;

/** An honest device of the world. */
export interface Node {
  readonly name: string;
  readonly identity: DeviceIdentity;
  readonly log: EventLog;
  readonly sync: Sync;
  /** The store as this device sees it: the attacks on it are set here. */
  readonly store: MaliciousStore;
  /** The device's disk (simulated): what survives a restart. */
  readonly fs: MemoryFileSystem;
}

let buckets = 0;

export class World {
  readonly nodes: Node[] = [];
  readonly #handles: KvStore[] = [];

  private constructor(
    readonly library: LibraryConfig,
    readonly founder: DeviceIdentity,
    /** An honest handle on the bucket: what anyone with write access to the store uses. */
    readonly raw: KvStore,
    readonly open: () => Promise<KvStore>,
    readonly implementation: SyncImplementation,
  ) {}

  /** A library founded by a new identity in a bucket of its own; its founder's device is `nodes[0]`, named `owner`. */
  static async create(
    open: (bucket: string) => Promise<KvStore>,
    implementation: SyncImplementation = { createLibrary, openSync },
  ): Promise<World> {
    const bucket = `adv${++buckets}${Date.now().toString(36)}`;
    const raw = await open(bucket);
    const founder = createIdentity();
    const library = await implementation.createLibrary({ kv: raw, identity: founder, id: 'family' });
    const world = new World(library, founder, raw, () => open(bucket), implementation);
    await world.device('owner', founder);
    return world;
  }

  /** Opens a device (sync not live: tests drive the rounds). */
  async device(
    name: string,
    identity: DeviceIdentity = createIdentity(),
    options: { bootstrap?: 'snapshot' | 'replay' } = {},
  ): Promise<Node> {
    const inner = await this.open();
    this.#handles.push(inner);
    const store = new MaliciousStore(inner);
    const node = await this.#open(name, identity, store, new MemoryFileSystem(), options.bootstrap ?? 'snapshot');
    this.nodes.push(node);
    return node;
  }

  async #open(
    name: string,
    identity: DeviceIdentity,
    store: MaliciousStore,
    fs: MemoryFileSystem,
    bootstrap: 'snapshot' | 'replay',
  ): Promise<Node> {
    const log = await openEventLog({ dir: '/device', fs, encryption: {} });
    const sync = await this.implementation.openSync({ log, kv: store, identity, library: this.library, live: false, bootstrap });
    return { name, identity, log, sync, store, fs };
  }

  /**
   * Restarts a device: closes its sync and log and opens them again from its
   * disk, with the same store handle (whatever that store hides, it still
   * hides). Returns the new node, which replaces the old one.
   */
  async restart(name: string): Promise<Node> {
    const old = this.node(name);
    await old.sync.close();
    await old.log.close();
    const node = await this.#open(name, old.identity, old.store, old.fs, 'replay');
    this.nodes.splice(this.nodes.indexOf(old), 1, node);
    return node;
  }

  node(name: string): Node {
    const node = this.nodes.find((candidate) => candidate.name === name);
    if (node === undefined) throw new Error(`no device ${name}`);
    return node;
  }

  /** The owner adds a new device with `role` and opens it. */
  async join(name: string, role: Role = 'member', by = 'owner'): Promise<Node> {
    const identity = createIdentity();
    await this.node(by).sync.addMember(invitationOf(identity), role);
    return this.device(name, identity);
  }

  /** Rounds of refresh and sync on every device (or `nodes`), errors kept in the status. */
  async settle(nodes: readonly Node[] = this.nodes, rounds = 3): Promise<void> {
    for (let round = 0; round < rounds; round++) {
      for (const node of nodes) {
        await node.sync.refreshHeads().catch(() => undefined);
        await node.sync.syncOnce().catch(() => undefined);
      }
    }
  }

  /** Closes the devices; `nodes` leaves some open (a device that crashed keeps nothing). */
  async close(): Promise<void> {
    for (const node of this.nodes) {
      await node.sync.close({ timeoutMs: 0 }).catch(() => undefined);
      await node.log.close().catch(() => undefined);
    }
    for (const handle of [...this.#handles, this.raw]) await handle.close().catch(() => undefined);
  }
}

/** The payloads of a log, as text, in log order. */
export async function payloads(log: EventLog): Promise<string[]> {
  const found: string[] = [];
  for await (const event of log.read()) found.push(text(event.payload));
  return found;
}

/** The event ids of a log, sorted: logs converge as sets. */
export async function eventIds(log: EventLog): Promise<string[]> {
  const ids: string[] = [];
  for await (const event of log.read()) ids.push(event.id);
  return ids.sort();
}

/** The alarm codes a device reports about `device` (every device when omitted). */
export function alarmsOf(node: Node, device?: string): string[] {
  return node.sync
    .status()
    .alarms.filter((alarm) => device === undefined || alarm.device === device)
    .map((alarm) => alarm.code);
}

/** Honest devices hold identical, verifying logs, none of them holds a forged payload, and none is behind. */
export async function expectHealthy(nodes: readonly Node[], forged: readonly string[] = []): Promise<void> {
  const first = nodes[0];
  if (first === undefined) return;
  const reference = await eventIds(first.log);
  for (const node of nodes) {
    const verified = await node.log.verify();
    expect(verified.ok, `${node.name}'s log does not verify: ${JSON.stringify(verified)}`).toBe(true);
    expect(await eventIds(node.log), `${node.name} did not converge with ${first.name}`).toEqual(reference);
    const seen = await payloads(node.log);
    for (const payload of forged) expect(seen, `${node.name} applied a forged payload`).not.toContain(payload);
  }
}

/** A forged or attacker-made event. */
export function eventOf(payload: string, id = randomEventId()): SyncedEvent {
  return {
    id: id as SyncedEvent['id'],
    entity: 'doc',
    scope: 'doc',
    kind,
    time: BigInt(Date.now()) << 16n,
    causationId: undefined,
    correlationId: undefined,
    parents: [],
    payload: bytes(payload),
    shredded: false,
  };
}

const ids = new UuidV7Generator();
const randomEventId = (): string => ids.next();

/** Seals and signs a changeset as `author` (claiming to be `device`), as an attacker holding `key` would. */
export async function forgeChangeset(options: {
  author: DeviceIdentity;
  device?: string;
  seq: number;
  previous: Uint8Array | undefined;
  generation: number;
  key: Uint8Array;
  events: readonly SyncedEvent[];
  libraryId?: string;
}): Promise<Uint8Array> {
  const { blake3 } = await loadHashers();
  const device = options.device ?? options.author.deviceId;
  return sealEnvelope(
    {
      device,
      seq: options.seq,
      schemaVersion: 1,
      timestamp: Date.now(),
      authorKey: options.author.publicKey,
      previousHash: options.previous === undefined ? new Uint8Array(32) : blake3(options.previous),
      keyGeneration: options.generation,
    },
    encodeChangeset(options.events),
    options.key,
    options.libraryId ?? 'family',
    `changes.${device}.${options.seq}`,
    nodeXChaCha,
    options.author,
  );
}

export type { Invitation };

/** Runs each attack in a world of its own, in one `it` named after its claim. */
export function itAttacks(
  attacks: readonly { claim: string; run: (world: World) => Promise<void> }[],
  open: () => (bucket: string) => Promise<KvStore>,
): void {
  for (const attack of attacks) {
    it(attack.claim, async () => {
      const world = await World.create(open());
      try {
        await attack.run(world);
      } finally {
        await world.close();
      }
    });
  }
}
