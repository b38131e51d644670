/**
 * `@weft/common`: what the weft packages share and nothing else. The event
 * log must not depend on the KV contract, so the error base lives here.
 *
 * @packageDocumentation
 */

export { bytesEqual, fillRandom, fromBase64, fromHex, randomBytes, toBase64, toHex, unrefTimer, utf8Length } from './bytes.js';
export { WeftError, type WeftErrorOptions } from './error.js';
export { Notifier } from './notifier.js';
export { pause } from './pause.js';
export { nextTask } from './tasks.js';
export { subscribeTrace, traced, type WeftTraceHandlers, type WeftTracingChannel, weftChannel } from './tracing.js';
