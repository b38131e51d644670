/**
 * How `@weft/kv-nats` connects in a browser (node.ts is Node's): WebSocket
 * through `@nats-io/nats-core`, the only transport a page has; servers are
 * `ws://` or `wss://` URLs of a nats-server `websocket` listener.
 */
export { wsconnect as connect } from '@nats-io/nats-core';
