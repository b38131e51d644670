import { type EventId, type EventLog, loadHashers, MemoryFileSystem, nodeXChaCha, openEventLog } from '@weft/eventlog';
import { createMemoryKvServer, type MemoryKvServer, openMemoryKv } from '@weft/kv';
import {
  createIdentity,
  createLibrary,
  type DeviceIdentity,
  decodeKeyWrap,
  encodeChangeset,
  encodeMembershipEntry,
  invitationOf,
  type LibraryConfig,
  openSync,
  type Sync,
  SyncError,
  sealEnvelope,
  unwrapKey,
} from '@weft/sync';
import { afterEach, describe, expect, it } from 'vitest';
import { bytes, eventSet, kind, text } from './helpers.js';

interface Node {
  identity: DeviceIdentity;
  log: EventLog;
  sync: Sync;
}

let opened: Node[] = [];
afterEach(async () => {
  for (const node of opened) {
    await node.sync.close();
    await node.log.close();
  }
  opened = [];
});

async function open(
  server: MemoryKvServer,
  library: LibraryConfig,
  identity = createIdentity(),
  options: Parameters<typeof openSync>[0]['bootstrap'] = 'snapshot',
  schemaVersion = 1,
): Promise<Node> {
  const log = await openEventLog({ dir: '/device', fs: new MemoryFileSystem(), encryption: {} });
  const sync = await openSync({
    log,
    kv: await openMemoryKv({ server, bucket: 'lib' }),
    identity,
    library,
    live: false,
    bootstrap: options,
    schemaVersion,
  });
  const node = { identity, log, sync };
  opened.push(node);
  return node;
}

async function settle(nodes: readonly Node[], rounds = 3): Promise<void> {
  for (let round = 0; round < rounds; round++) {
    for (const node of nodes) {
      await node.sync.refreshHeads();
      await node.sync.syncOnce();
    }
  }
}

async function founded(): Promise<{ server: MemoryKvServer; library: LibraryConfig; owner: Node }> {
  const server = createMemoryKvServer();
  const identity = createIdentity();
  const library = await createLibrary({ kv: await openMemoryKv({ server, bucket: 'lib' }), identity, id: 'family' });
  return { server, library, owner: await open(server, library, identity) };
}

describe('membership, keys and roles', () => {
  it('an owner adds members and a reader; a reader cannot write; non-owners cannot change membership', async () => {
    const { server, library, owner } = await founded();
    const member = await open(server, library);
    const reader = await open(server, library);
    await owner.sync.addMember(invitationOf(member.identity));
    await owner.sync.addMember(invitationOf(reader.identity), 'reader');
    await owner.log.append({ entity: 'doc', kind, payload: bytes('by the owner') });
    await member.log.append({ entity: 'doc', kind, payload: bytes('by a member') });
    await reader.log.append({ entity: 'doc', kind, payload: bytes('by a reader') });
    await settle([owner, member, reader]);
    expect((await eventSet(owner.log)).length).toBe(2);
    expect(await eventSet(member.log)).toEqual(await eventSet(owner.log));
    expect(reader.sync.status().role).toBe('reader');
    expect(reader.sync.status().pendingUploads).toBe(1);
    const denied = await member.sync.addMember(invitationOf(createIdentity())).catch((error: unknown) => error);
    expect(SyncError.is(denied, 'NotAllowed')).toBe(true);
  });

  it('an entry written into the store by a non-owner is rejected and changes nothing', async () => {
    const { server, library, owner } = await founded();
    const member = await open(server, library);
    await owner.sync.addMember(invitationOf(member.identity));
    const intruder = createIdentity();
    const raw = await openMemoryKv({ server, bucket: 'lib' });
    const forged = encodeMembershipEntry(
      {
        op: 'add',
        author: member.identity.deviceId,
        seq: 1,
        parents: owner.sync.membership()?.tips ?? [],
        subject: intruder.deviceId,
        subjectKey: intruder.publicKey,
        subjectX25519: invitationOf(intruder).x25519PublicKey,
        role: 'owner',
        keyGeneration: 0,
        cutoff: 0,
      },
      member.identity,
      'family',
    );
    await raw.put(`membership.${member.identity.deviceId}.1`, forged);
    await owner.sync.syncOnce();
    const membership = owner.sync.membership();
    expect(membership?.members.has(intruder.deviceId)).toBe(false);
    expect(membership?.rejected.some((entry) => entry.author === member.identity.deviceId && /not an owner/.test(entry.reason))).toBe(true);
  });

  it('removing a member rotates the key: its later writes are rejected everywhere, it reads nothing written after', async () => {
    const { server, library, owner } = await founded();
    const kept = await open(server, library);
    const removed = await open(server, library);
    await owner.sync.addMember(invitationOf(kept.identity));
    await owner.sync.addMember(invitationOf(removed.identity));
    await removed.log.append({ entity: 'doc', kind, payload: bytes('before removal') });
    await settle([owner, kept, removed]);
    const { generation, cutoff } = await owner.sync.removeMember(removed.identity.deviceId);
    expect(generation).toBe(1);
    expect(cutoff).toBe(1);
    // An honest removed device stops uploading once it learns of its removal...
    await removed.log.append({ entity: 'doc', kind, payload: bytes('honest after removal') });
    await removed.sync.syncOnce();
    expect(removed.sync.status().pendingUploads).toBe(1);
    // ...says so in its status, with the entry that removed it...
    expect(removed.sync.status().removed).toMatchObject({ by: owner.identity.deviceId, cutoff: 1 });
    expect(removed.sync.status().removed?.entry).toMatch(/^[0-9a-f]{64}$/);
    // ...says why its uploads stopped, and waitUntilCaughtUp says so at once instead of running out its timeout.
    expect(removed.sync.status().lastError).toContain('was removed');
    const waited = await removed.sync.waitUntilCaughtUp({ timeoutMs: 60_000 }).catch((error: unknown) => error);
    expect(SyncError.is(waited, 'NotAllowed')).toBe(true);
    expect((waited as Error).message).toContain('was removed');
    expect(kept.sync.status().removed).toBeUndefined();
    // ...and raises no alarm about what it can no longer read, however much is written after.
    await owner.log.append({ entity: 'doc', kind, payload: bytes('after rotation') });
    await owner.sync.syncOnce();
    await removed.sync.syncOnce();
    expect(removed.sync.status().alarms.map((alarm) => alarm.code)).not.toContain('DecryptionFailed');
    expect(removed.sync.status().devices[owner.identity.deviceId]?.stuck ?? '').toContain('was removed');
    // ...and a malicious one that keeps its old key and writes anyway is rejected everywhere.
    const raw = await openMemoryKv({ server, bucket: 'lib' });
    const oldKey = unwrapKey(
      decodeKeyWrap((await raw.get(`keys.${removed.identity.deviceId}.0`))?.value ?? new Uint8Array()),
      removed.identity,
      library.id,
      nodeXChaCha,
    );
    const previous = await raw.get(`changes.${removed.identity.deviceId}.1`);
    const { blake3 } = await loadHashers();
    const keyPath = `changes.${removed.identity.deviceId}.2`;
    const late = sealEnvelope(
      {
        device: removed.identity.deviceId,
        seq: 2,
        schemaVersion: 1,
        timestamp: Date.now(),
        authorKey: removed.identity.publicKey,
        previousHash: blake3(previous?.value ?? new Uint8Array()),
        keyGeneration: 0,
      },
      encodeChangeset([
        {
          id: '01890000-0000-7000-8000-000000000001' as EventId,
          entity: 'doc',
          scope: 'doc',
          kind,
          time: 1n,
          causationId: undefined,
          correlationId: undefined,
          parents: [],
          payload: bytes('after removal'),
          shredded: false,
        },
      ]),
      oldKey ?? new Uint8Array(32),
      library.id,
      keyPath,
      nodeXChaCha,
      removed.identity,
    );
    await raw.put(keyPath, late);
    await raw.put(`heads.${removed.identity.deviceId}`, bytes(JSON.stringify({ seq: 2, time: Date.now() })));
    await owner.log.append({ entity: 'doc', kind, payload: bytes('secret after rotation') });
    await kept.log.append({ entity: 'doc', kind, payload: bytes('kept writes after rotation') });
    await settle([owner, kept, removed]);
    const payloads = async (log: EventLog) => (await eventSet(log)).map((line) => line.split('|')[4]);
    for (const node of [owner, kept]) {
      expect(await payloads(node.log)).not.toContain('after removal');
      expect(node.sync.status().alarms.some((alarm) => alarm.code === 'Revoked' && alarm.device === removed.identity.deviceId)).toBe(true);
      expect(node.sync.status().keyGeneration).toBe(1);
      expect(node.sync.status().rotationPending).toBe(false);
    }
    expect(await eventSet(owner.log)).toEqual(await eventSet(kept.log));
    const seenByRemoved = await payloads(removed.log);
    expect(seenByRemoved).toContain('before removal');
    expect(await payloads(owner.log)).not.toContain('honest after removal');
    expect(seenByRemoved).not.toContain('secret after rotation');
    expect(seenByRemoved).not.toContain('kept writes after rotation');
    expect(removed.sync.status().role).toBeUndefined();
    // What it cannot read is its removal, said once in its status, not a DecryptionFailed alarm about the new keys.
    expect(removed.sync.status().alarms.some((alarm) => alarm.code === 'DecryptionFailed')).toBe(false);
    expect(removed.sync.status().removed?.by).toBe(owner.identity.deviceId);
  });

  it('a device below the minimum schema version refuses to sync with a clear error', async () => {
    const { server, library, owner } = await founded();
    const old = await open(server, library);
    await owner.sync.addMember(invitationOf(old.identity));
    await owner.sync.setMinSchemaVersion(2);
    const error = await old.sync.syncOnce().catch((caught: unknown) => caught);
    expect(SyncError.is(error, 'SchemaTooOld')).toBe(true);
    expect((error as Error).message).toContain('upgrade');
    const upgraded = await open(server, library, old.identity, 'snapshot', 2);
    await upgraded.sync.syncOnce();
  });
});

describe('snapshots, garbage collection and blobs', () => {
  it('a new device bootstraps from a snapshot to the same state as a device that replays everything', async () => {
    const { server, library, owner } = await founded();
    const member = await open(server, library);
    await owner.sync.addMember(invitationOf(member.identity));
    for (let index = 0; index < 30; index++) {
      const node = index % 2 ? owner : member;
      await node.log.append({ entity: `doc-${index % 3}`, kind, payload: bytes(`event ${index}`) });
    }
    await settle([owner, member]);
    const snapshotId = await owner.sync.publishSnapshot();
    expect(snapshotId).toMatch(/^[0-9a-f]{24}$/);
    await owner.log.append({ entity: 'doc-0', kind, payload: bytes('after the snapshot') });
    await owner.sync.syncOnce();
    const fromSnapshot = await open(server, library);
    const fromReplay = await open(server, library, createIdentity(), 'replay');
    await owner.sync.addMember(invitationOf(fromSnapshot.identity));
    await owner.sync.addMember(invitationOf(fromReplay.identity));
    await settle([owner, member, fromSnapshot, fromReplay]);
    const reference = await eventSet(owner.log);
    expect(reference.length).toBe(31);
    expect(await eventSet(fromSnapshot.log)).toEqual(reference);
    expect(await eventSet(fromReplay.log)).toEqual(reference);
  });

  it('garbage collection purges only what every member applied and the snapshot covers; a device left below the floor is told to re-bootstrap', async () => {
    const { server, library, owner } = await founded();
    const member = await open(server, library);
    await owner.sync.addMember(invitationOf(member.identity));
    for (let index = 0; index < 6; index++) {
      await (index % 2 ? owner : member).log.append({ entity: 'doc', kind, payload: bytes(`e${index}`) });
      await settle([owner, member], 1);
    }
    const raw = await openMemoryKv({ server, bucket: 'lib' });
    const lagging = await open(server, library, createIdentity(), 'replay');
    await owner.sync.addMember(invitationOf(lagging.identity));
    await settle([owner, member]);
    // Nothing is purged while a member has not applied it (the lagging device has applied nothing).
    await owner.sync.publishSnapshot();
    expect(await owner.sync.collectGarbage({ graceMs: 0 })).toEqual({});
    // Once the lagging device is removed, the rest is collected, up to what the snapshot covers.
    await owner.sync.removeMember(lagging.identity.deviceId);
    await owner.sync.publishSnapshot();
    const purged = await owner.sync.collectGarbage({ graceMs: 0 });
    expect(Object.values(purged).reduce((sum, count) => sum + count, 0)).toBeGreaterThan(0);
    expect(await raw.get(`changes.${owner.identity.deviceId}.1`)).toBeUndefined();
    // A replaying device added now finds history purged below the floor: told to re-bootstrap, never skipped.
    const late = await open(server, library, createIdentity(), 'replay');
    await owner.sync.addMember(invitationOf(late.identity));
    await late.sync.syncOnce();
    await late.sync.refreshHeads();
    await late.sync.syncOnce();
    expect(late.sync.status().rebootstrapRequired).toBe(true);
    expect((await eventSet(late.log)).length).toBe(0);
    expect(await late.sync.bootstrapFromSnapshot()).toBe(true);
    await settle([owner, member, late]);
    expect(await eventSet(late.log)).toEqual(await eventSet(owner.log));
    expect(late.sync.status().rebootstrapRequired).toBe(false);
  });

  it('blobs travel encrypted in chunks; the cursor waits until a referenced blob is stored', async () => {
    const { server, library, owner } = await founded();
    const member = await open(server, library);
    await owner.sync.addMember(invitationOf(member.identity));
    const big = new Uint8Array(2_500_000);
    for (let index = 0; index < big.length; index++) big[index] = (index * 7 + 3) & 0xff;
    const id = await owner.sync.putBlob(big);
    await owner.log.append({ entity: 'doc', kind, payload: bytes(`see blob ${id}`) });
    await owner.sync.syncOnce();
    const raw = await openMemoryKv({ server, bucket: 'lib' });
    const chunk = `blobs.${id.slice(0, 2)}.${id.slice(2, 4)}.${id}.2`;
    const saved = await raw.get(chunk);
    expect(saved).toBeDefined();
    expect(Buffer.from(saved?.value ?? []).includes(Buffer.from(big.subarray(1_100_000, 1_100_064)))).toBe(false);
    await raw.delete(chunk);
    await member.sync.refreshHeads();
    await member.sync.syncOnce();
    expect(member.sync.status().devices[owner.identity.deviceId]?.applied).toBe(0);
    expect(await member.sync.getBlob(id)).toBeUndefined();
    await raw.put(chunk, saved?.value ?? new Uint8Array());
    await member.sync.syncOnce();
    expect(member.sync.status().devices[owner.identity.deviceId]?.applied).toBe(1);
    expect(Buffer.from((await member.sync.getBlob(id)) ?? []).equals(Buffer.from(big))).toBe(true);
    expect(text((await member.log.at(1))?.payload ?? new Uint8Array())).toBe(`see blob ${id}`);
  });
});
