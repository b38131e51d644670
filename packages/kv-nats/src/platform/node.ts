/**
 * How `@weft/kv-nats` connects on Node.js (and Bun, Deno): TCP through
 * `@nats-io/transport-node`, or WebSocket (`ws://`, `wss://` servers)
 * through `@nats-io/nats-core`'s transport and the runtime's WebSocket.
 * Selected by the `#platform` import's `default` condition; a browser gets
 * `browser.ts`, WebSocket only.
 */
import { type ConnectionOptions, hasWsProtocol, type NatsConnection, wsconnect } from '@nats-io/nats-core';
import { connect as tcpConnect } from '@nats-io/transport-node';

/** Opens a connection: WebSocket when the servers are `ws://` or `wss://` URLs, TCP otherwise. */
export function connect(options: ConnectionOptions): Promise<NatsConnection> {
  if (!hasWsProtocol(options)) return tcpConnect(options);
  // Without one, nats.js's WebSocket transport waits forever instead of failing.
  if ((globalThis as { WebSocket?: unknown }).WebSocket === undefined)
    return Promise.reject(new Error('this runtime has no WebSocket (Node.js has one from version 22)'));
  return wsconnect(options);
}
