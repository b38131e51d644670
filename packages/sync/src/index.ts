/**
 * `@weft/sync`: end-to-end encrypted replication of `@weft/eventlog` logs
 * between the devices of a library, through any `@weft/kv` backend.
 *
 * ```ts
 * import { createIdentity, openSync } from '@weft/sync';
 * const sync = await openSync({ log, kv, identity, library: { id: 'family', key, members } });
 * await sync.waitUntilCaughtUp();
 * ```
 *
 * Each device pushes its new events as a signed, encrypted changeset
 * (`changes.<device>.<seq>`, created once, then its head moved forward with
 * compare-and-swap) and pulls the others' through a watch on `heads`,
 * verifying signatures, hash chains and schema versions before applying
 * events idempotently. See docs/protocols/sync.md.
 *
 * @packageDocumentation
 */

export {
  type Invitation,
  invitationOf,
  type LibraryConfig,
  type PushStage,
  type SyncFaultHooks,
  type SyncOptions,
} from './config.js';
export {
  concat,
  decodeChangeset,
  decodeChangesetBody,
  decodeEnvelope,
  type Envelope,
  type EnvelopeFields,
  encodeChangeset,
  envelopeSignatureValid,
  envelopeVersion,
  openEnvelope,
  payloadAad,
  type SyncedEvent,
  sealEnvelope,
} from './envelope.js';
export { SyncError, SyncErrorCode } from './errors.js';
export {
  createIdentity,
  type DeviceIdentity,
  type DevicePublic,
  deviceIdOf,
  identityFromPrivateKey,
  idTagOf,
  signWith,
  verifySignature,
} from './identity.js';
export { decodeKeyWrap, type KeyWrap, unwrapKey, wrapKey, x25519Of } from './keys.js';
export { createLibrary } from './library.js';
export { type LwwState, lwwDelete, lwwDeleteKind, lwwSet, lwwSetKind, projectLww } from './lww.js';
export {
  decodeMembershipEntry,
  encodeMembershipEntry,
  type Member,
  type MembershipEntry,
  type MembershipFields,
  type MembershipOp,
  type MembershipState,
  type Role,
} from './membership.js';
export { deriveMembership } from './membership-derive.js';
export type { SyncStateData } from './state.js';
export type { SyncAlarm, SyncStatus } from './status.js';
export { openSync, Sync, type SyncRoundContext, syncPullChannel, syncPushChannel } from './sync.js';
