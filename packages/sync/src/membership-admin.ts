/**
 * What an owner does to the membership: add a device (wrapping every key
 * generation for it), remove one (freezing its head, rotating the library
 * key for the rest), change a role, raise the minimum schema version.
 */
import { randomBytes } from '@weft/common';
import type { Invitation } from './config.js';
import type { SyncContext } from './context.js';
import { SyncError, SyncErrorCode } from './errors.js';
import { freezeHead, isCasRetry } from './heads.js';
import { deviceIdOf } from './identity.js';
import { keyCommitment } from './keys.js';
import type { Role } from './membership.js';
import { zeroHashHex } from './state.js';
import { encodeStatement } from './statements.js';
import { minSchemaVersionKey } from './store-layout.js';

/** Adds a device (owner only); adding a current member only makes sure its key wraps are there. */
export async function addMember(context: SyncContext, invitation: Invitation, role: Role): Promise<void> {
  const { library } = context;
  const membership = library.assertOwner();
  if (deviceIdOf(invitation.publicKey) !== invitation.deviceId)
    throw new SyncError(SyncErrorCode.InvalidArgument, 'the invitation keys do not match its device id');
  for (let generation = 0; generation <= membership.generation; generation++) {
    const key = library.keys.get(generation);
    if (key !== undefined) await library.writeWrap(invitation, generation, key);
  }
  const existing = membership.members.get(invitation.deviceId);
  if (existing !== undefined && existing.removedAfter === undefined) return;
  await library.writeEntry({
    op: 'add',
    subject: invitation.deviceId,
    subjectKey: invitation.publicKey,
    subjectX25519: invitation.x25519PublicKey,
    role,
    keyGeneration: membership.generation,
    cutoff: 0,
  });
  context.notify();
}

/**
 * Removes a device (owner only) and rotates the library key: first pulls
 * everything the device wrote (`pullAll`), freezes its head, wraps a new key
 * generation for the remaining members, then writes the removal.
 */
export async function removeMember(
  context: SyncContext,
  deviceId: string,
  pullAll: () => Promise<unknown>,
): Promise<{ generation: number; cutoff: number }> {
  const { library } = context;
  const membership = library.assertOwner();
  const subject = membership.members.get(deviceId);
  if (subject === undefined || subject.removedAfter !== undefined)
    throw new SyncError(SyncErrorCode.InvalidArgument, `${deviceId} is not a member`);
  if (deviceId !== context.device) await pullAll();
  // Freeze the device's head first (compare-and-swap, so it cannot race the device's own head update):
  // every changeset it published before is accepted everywhere, nothing it publishes after is.
  const frozen = await freezeHead(context.kv, deviceId, context.clock);
  // The removal binds the device's history: the cutoff is the last changeset this owner verified (everything
  // the frozen head announced, when the store serves it intact), and its hash goes into the entry, so a chain
  // rewritten at or below it is caught everywhere.
  if (deviceId !== context.device) {
    context.board.known.set(deviceId, Math.max(context.board.known.get(deviceId) ?? 0, frozen));
    await pullAll();
  }
  const verified =
    deviceId === context.device
      ? { seq: context.state.lastSeq, hash: context.state.lastHash }
      : (context.state.remote[deviceId] ?? { seq: 0, hash: zeroHashHex });
  const cutoff = verified.seq;
  const cutoffHash = verified.hash;
  const generation = membership.generation + 1;
  const key = randomBytes(32);
  for (const member of membership.members.values()) {
    if (member.removedAfter === undefined && member.deviceId !== deviceId) await library.writeWrap(member, generation, key);
  }
  library.keys.set(generation, key);
  await library.writeEntry({
    op: 'remove',
    subject: deviceId,
    subjectKey: subject.publicKey,
    subjectX25519: subject.x25519PublicKey,
    role: subject.role,
    keyGeneration: generation,
    cutoff,
    cutoffHash,
    keyCommitment: keyCommitment(key, library.id, generation),
  });
  context.notify();
  return { generation, cutoff };
}

/** Rotates the library key (owner only): a new generation, wrapped for every current member, then the rotation entry. */
export async function rotateKey(context: SyncContext): Promise<{ generation: number }> {
  const { library } = context;
  const membership = library.assertOwner();
  const self = membership.members.get(context.device);
  if (self === undefined) throw new SyncError(SyncErrorCode.NotAllowed, 'only an owner can rotate the library key');
  const generation = membership.generation + 1;
  const key = randomBytes(32);
  for (const member of membership.members.values()) {
    if (member.removedAfter === undefined) await library.writeWrap(member, generation, key);
  }
  library.keys.set(generation, key);
  await library.writeEntry({
    op: 'rotate',
    subject: self.deviceId,
    subjectKey: self.publicKey,
    subjectX25519: self.x25519PublicKey,
    role: self.role,
    keyGeneration: generation,
    cutoff: 0,
    keyCommitment: keyCommitment(key, library.id, generation),
  });
  context.notify();
  return { generation };
}

/**
 * Writes this owner's wraps of every key generation it holds for every
 * current member again (each only where the store lacks it or holds other
 * bytes): after the store forgot, members added since its last good state
 * get their keys back.
 */
export async function restoreWraps(context: SyncContext): Promise<void> {
  const { library } = context;
  const membership = library.assertOwner();
  for (const member of membership.members.values()) {
    if (member.removedAfter !== undefined) continue;
    for (let generation = 0; generation <= membership.generation; generation++) {
      const key = library.keys.get(generation);
      if (key !== undefined) await library.writeWrap(member, generation, key);
    }
  }
}

/** Changes a member's role (owner only). */
export async function setRole(context: SyncContext, deviceId: string, role: Role): Promise<void> {
  const { library } = context;
  const membership = library.assertOwner();
  const subject = membership.members.get(deviceId);
  if (subject === undefined || subject.removedAfter !== undefined)
    throw new SyncError(SyncErrorCode.InvalidArgument, `${deviceId} is not a member`);
  await library.writeEntry({
    op: 'role',
    subject: deviceId,
    subjectKey: subject.publicKey,
    subjectX25519: subject.x25519PublicKey,
    role,
    keyGeneration: membership.generation,
    cutoff: 0,
  });
}

/** Raises `meta.min_schema_version` with compare-and-swap, as a statement signed by this owner; never lowers it. */
export async function setMinSchemaVersion(context: SyncContext, version: number): Promise<void> {
  const { kv, library } = context;
  if (!Number.isSafeInteger(version) || version < 1)
    throw new SyncError(SyncErrorCode.InvalidArgument, 'a schema version is a positive integer');
  if (library.config.founder !== undefined) library.assertOwner();
  for (let attempt = 0; attempt < 20; attempt++) {
    const current = await kv.get(minSchemaVersionKey);
    if (current !== undefined && library.minSchemaVersionIn(current) >= version) return;
    const value = encodeStatement('min-schema', { version }, context.identity, library.id);
    try {
      if (current === undefined) await kv.create(minSchemaVersionKey, value);
      else await kv.update(minSchemaVersionKey, value, current.version);
      return;
    } catch (error) {
      if (!isCasRetry(error)) throw error;
    }
  }
}
