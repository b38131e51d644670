/**
 * The sync decoders treat bytes as hostile: random mutations of valid
 * membership entries (key commitments and cutoff hashes included), snapshot
 * manifests and bodies, owner statements, key wraps and envelopes give a
 * `SyncError` or decode to something whose signature covers it, never an
 * exception of another kind.
 */
import { randomBytes } from 'node:crypto';
import { fc, test } from '@fast-check/vitest';
import { loadHashers, nodeXChaCha } from '@weft/eventlog';
import {
  createIdentity,
  decodeEnvelope,
  decodeKeyWrap,
  decodeMembershipEntry,
  encodeChangeset,
  encodeMembershipEntry,
  invitationOf,
  SyncError,
  sealEnvelope,
  wrapKey,
} from '@weft/sync';
import { describe, expect } from 'vitest';
import { decodeManifest, decodeSnapshotBody, encodeManifest, encodeSnapshotBody } from '../src/snapshot.js';
import { decodeStatement, encodeStatement } from '../src/statements.js';

const hashers = await loadHashers();
const runs = Number(process.env.WEFT_PROPERTY_RUNS ?? 200);
const seed = Number(process.env.WEFT_SEED ?? Date.now() % 2 ** 31);
console.log(`sync decoder fuzzing: ${runs} runs per property, seed ${seed} (replay with WEFT_SEED=${seed})`);

const author = createIdentity();
const subject = createIdentity();
const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString('hex');

const samples: Record<string, { bytes: Uint8Array; decode: (bytes: Uint8Array) => unknown }> = {
  'membership entry (removal with commitment and cutoff hash)': {
    bytes: encodeMembershipEntry(
      {
        op: 'remove',
        author: author.deviceId,
        seq: 3,
        parents: [hex(randomBytes(32)), hex(randomBytes(32))],
        subject: subject.deviceId,
        subjectKey: subject.publicKey,
        subjectX25519: invitationOf(subject).x25519PublicKey,
        role: 'member',
        keyGeneration: 2,
        cutoff: 7,
        cutoffHash: hex(randomBytes(32)),
        keyCommitment: randomBytes(32),
      },
      author,
      'family',
    ),
    decode: (bytes) => decodeMembershipEntry(bytes, hashers, 'family'),
  },
  'membership entry (rotation, format 3: bound to its library)': {
    bytes: encodeMembershipEntry(
      {
        op: 'rotate',
        author: author.deviceId,
        seq: 4,
        parents: [hex(randomBytes(32))],
        subject: author.deviceId,
        subjectKey: author.publicKey,
        subjectX25519: invitationOf(author).x25519PublicKey,
        role: 'owner',
        keyGeneration: 3,
        cutoff: 0,
        keyCommitment: randomBytes(32),
      },
      author,
      'family',
    ),
    decode: (bytes) => decodeMembershipEntry(bytes, hashers, 'family'),
  },
  'snapshot manifest': {
    bytes: encodeManifest(
      {
        id: 'a1b2c3',
        chunks: 2,
        generation: 1,
        author: author.deviceId,
        createdAt: 1_700_000_000_000,
        bodyHash: hex(randomBytes(32)),
        cursors: { [subject.deviceId]: { seq: 4, hash: hex(randomBytes(32)) } },
        membership: [hex(randomBytes(32))],
      },
      author,
      'family',
    ),
    decode: (bytes) => decodeManifest(bytes, 'family'),
  },
  'snapshot body': {
    bytes: encodeSnapshotBody({ [subject.deviceId]: { seq: 4, hash: hex(randomBytes(32)) } }, encodeChangeset([])),
    decode: decodeSnapshotBody,
  },
  'floor statement': {
    bytes: encodeStatement('floor', { device: subject.deviceId, floor: 9 }, author, 'family'),
    decode: (bytes) => decodeStatement(bytes, 'floor', 'family'),
  },
  'key wrap': { bytes: wrapKey(randomBytes(32), 1, invitationOf(subject), author, 'family', nodeXChaCha), decode: decodeKeyWrap },
  envelope: {
    bytes: sealEnvelope(
      {
        device: author.deviceId,
        seq: 1,
        schemaVersion: 1,
        timestamp: 1,
        authorKey: author.publicKey,
        previousHash: new Uint8Array(32),
        keyGeneration: 0,
      },
      encodeChangeset([]),
      randomBytes(32),
      'family',
      `changes.${author.deviceId}.1`,
      nodeXChaCha,
      author,
    ),
    decode: decodeEnvelope,
  },
};

type Mutation =
  | { kind: 'flip'; at: number; bit: number }
  | { kind: 'cut'; at: number }
  | { kind: 'extend'; extra: Uint8Array }
  | { kind: 'set'; at: number; value: number };

const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), bit: fc.integer({ min: 0, max: 7 }) }),
  fc.record({ kind: fc.constant('cut' as const), at: fc.nat() }),
  fc.record({ kind: fc.constant('extend' as const), extra: fc.uint8Array({ minLength: 1, maxLength: 40 }) }),
  fc.record({ kind: fc.constant('set' as const), at: fc.nat(), value: fc.integer({ min: 0, max: 255 }) }),
);

function mutate(bytes: Uint8Array, mutations: readonly Mutation[]): Uint8Array {
  let result = bytes.slice();
  for (const change of mutations) {
    if (result.length === 0) break;
    if (change.kind === 'extend') {
      result = new Uint8Array([...result, ...change.extra]);
      continue;
    }
    const at = change.at % result.length;
    if (change.kind === 'flip') result[at] = (result[at] as number) ^ (1 << change.bit);
    else if (change.kind === 'set') result[at] = change.value;
    else result = result.slice(0, at);
  }
  return result;
}

describe('sync decoders on hostile bytes', () => {
  for (const [name, sample] of Object.entries(samples)) {
    test.prop([fc.array(mutation, { minLength: 1, maxLength: 4 })], { numRuns: runs, seed })(
      `a mutated ${name} gives a SyncError, or decodes only where nothing signed changed`,
      (mutations) => {
        const mutated = mutate(sample.bytes, mutations);
        try {
          sample.decode(mutated);
        } catch (error) {
          expect(error, String(error)).toBeInstanceOf(SyncError);
          return;
        }
        // What still decodes either is the original, or differs only where no signature or check covers it
        // (an envelope's sealed payload is checked when it is opened, not when it is decoded).
        if (name !== 'envelope' && name !== 'key wrap' && name !== 'snapshot body')
          expect(Buffer.from(mutated).equals(Buffer.from(sample.bytes))).toBe(true);
      },
    );
    test.prop([fc.uint8Array({ maxLength: 600 })], { numRuns: runs, seed })(`random bytes never crash the ${name} decoder`, (bytes) => {
      try {
        sample.decode(bytes);
      } catch (error) {
        expect(error, String(error)).toBeInstanceOf(SyncError);
      }
    });
  }
});
