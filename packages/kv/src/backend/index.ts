/**
 * `@weft/kv/backend`: what a backend author needs, apart from the user API.
 *
 * A backend writes a {@link KvDriver} of its native primitives (read a
 * record, list a page, apply a mutation with its precondition, a change feed
 * with its bounds) and hands it to {@link defineKvStore}, which implements
 * every derived clause of the contract once: validation and typed errors,
 * closed state, `keys()` over a listing, TTL visibility in listings,
 * `Symbol.asyncDispose` and the watch protocol (state-sync listing,
 * `synced`, resume, `CursorExpired`, prefix filtering, abort).
 * CONTRIBUTING.md walks through adding a backend.
 *
 * @packageDocumentation
 */

export { Notifier, pause } from '@weft/common';
export { alreadyExists, KvError, KvErrorCode, kvError, revisionMismatch } from '../errors.js';
export { assertValidKey, assertValidPrefix, keyMatchesAnyPrefix, normalizePrefixes } from '../keys.js';
export {
  assertBucketName,
  assertIntegerOptions,
  assertSignal,
  assertTtl,
  assertValue,
  describe as describeArgument,
} from '../validate.js';
export { Deadlines, readTimeout, writeTimeout } from './deadline.js';
export type {
  ChangeFeedItem,
  ChangeRequest,
  CursorCodec,
  KvCommitMutation,
  KvDriver,
  KvMutation,
  KvMutationKind,
  ParsedCursor,
} from './driver.js';
export { defineKvStore, type KvOperationContext, KvStoreFront, kvOperationChannel } from './store.js';
export { backoffMs, copyBytes, messageOf, serverAddress, ttlLapsed, unreachableReason } from './util.js';
export { runWatch, type WatchRun } from './watch-loop.js';
