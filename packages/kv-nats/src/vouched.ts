import type { StreamInfo } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/nats-core';
import type { Version } from '@weft/kv';
import type { ConnectionGate } from './connection-gate.js';

/** How many keys' versions a handle remembers as vouched for by its own connection. */
const maxVouched = 16_384;

/**
 * The versions a handle may compare-and-swap on without reading the key
 * first. A version is vouched for when the one server that holds the stream
 * said it over this handle's connection, and the connection has not been
 * interrupted since: that server has not restarted, so it cannot have
 * forgotten the write, and a compare-and-swap on the sequence alone is
 * safe. Only the last version of each key is kept, for the current
 * connection generation.
 */
export class VouchedVersions {
  readonly #gate: ConnectionGate;
  readonly #connection: NatsConnection;
  /**
   * The one server that holds the stream: `standalone` for a server outside
   * a cluster, the node's name for a one-replica stream in one, `undefined`
   * for a replicated stream (nothing is vouched for).
   */
  readonly #soleServer: string | undefined;
  readonly #versions = new Map<string, Version>();
  #generation = 0;

  constructor(gate: ConnectionGate, connection: NatsConnection, info: StreamInfo) {
    this.#gate = gate;
    this.#connection = connection;
    const leader = info.cluster?.leader;
    this.#soleServer = leader === undefined ? 'standalone' : info.config.num_replicas === 1 ? leader : undefined;
  }

  /** The connection generation to pass to {@link vouch} for a request sent now. */
  get generation(): number {
    return this.#gate.generation;
  }

  /** Remembers `version` of `key`, said by the server over a request sent in `generation`; returns it. */
  vouch(key: string, version: Version, generation: number): Version {
    if (this.#soleServer === undefined || generation !== this.#gate.generation) return version;
    // What an earlier generation vouched for is void; past the bound, start over (a read is the fallback, not a loss).
    if (this.#generation !== generation || (this.#versions.size >= maxVouched && !this.#versions.has(key))) {
      this.#versions.clear();
      this.#generation = generation;
    }
    this.#versions.set(key, version);
    return version;
  }

  /** Whether `version` of `key` is vouched for still: the same connection generation, to the sole server. */
  has(key: string, version: Version): boolean {
    if (this.#generation !== this.#gate.generation || this.#versions.get(key) !== version) return false;
    const server = this.#connection.info;
    return this.#soleServer === 'standalone' ? server?.cluster === undefined : this.#soleServer === server?.server_name;
  }
}
