/**
 * Identity and key-wrap key material: the byte formats (RFC 8032 for the
 * Ed25519 identity, the Edwards-to-Montgomery map for its X25519 key) and a
 * child process that runs the identity and wrap paths under constant garbage
 * collection, where a JWK export of a freshly generated key deadlocks Node 20.
 */
import { randomBytes } from 'node:crypto';
import { defaultXChaCha } from '@weft/eventlog';
import { createIdentity, decodeKeyWrap, identityFromPrivateKey, signWith, unwrapKey, verifySignature, wrapKey, x25519Of } from '@weft/sync';
import { runChild } from '@weft/test-servers';
import { describe, expect, it } from 'vitest';

const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString('hex');

/** u = (1 + y) / (1 - y) mod 2^255 - 19: the Montgomery u of an Ed25519 public key, computed apart from node:crypto. */
function montgomeryOf(edwardsPublicKey: Uint8Array): string {
  const p = 2n ** 255n - 19n;
  const y = BigInt(`0x${hex(Uint8Array.from(edwardsPublicKey).reverse())}`) & ((1n << 255n) - 1n);
  const power = (base: bigint, exponent: bigint) => {
    let result = 1n;
    let b = base % p;
    for (let e = exponent; e > 0n; e >>= 1n) {
      if (e & 1n) result = (result * b) % p;
      b = (b * b) % p;
    }
    return result;
  };
  const u = ((1n + y) * power((1n - y + p) % p, p - 2n)) % p;
  return hex(Buffer.from(u.toString(16).padStart(64, '0'), 'hex').reverse());
}

describe('identity key material', () => {
  it('derives the RFC 8032 public key and the device id bound to it', () => {
    // RFC 8032, section 7.1, test 1.
    const identity = identityFromPrivateKey(Buffer.from('9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60', 'hex'));
    expect(hex(identity.publicKey)).toBe('d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a');
    expect(identity.deviceId).toBe('21fe31dfa154a261626bf854046fd227');
    expect(hex(x25519Of(identity).publicKey)).toBe('d85e07ec22b0ad881537c2f44d662d1a143cf830c57aca4305d85c7a90f6b62e');
  });

  it('gives a new identity raw keys that rebuild, sign and derive the X25519 key of the same point', () => {
    for (let round = 0; round < 20; round++) {
      const identity = createIdentity();
      expect(identity.privateKey.length).toBe(32);
      expect(identity.publicKey.length).toBe(32);
      const rebuilt = identityFromPrivateKey(identity.privateKey);
      expect(hex(rebuilt.publicKey)).toBe(hex(identity.publicKey));
      expect(rebuilt.deviceId).toBe(identity.deviceId);
      const message = randomBytes(40);
      expect(verifySignature(identity.publicKey, message, signWith(rebuilt, message))).toBe(true);
      expect(hex(x25519Of(identity).publicKey)).toBe(montgomeryOf(identity.publicKey));
    }
  });

  it('keeps its derived X25519 key to itself: changing a returned copy changes nothing', () => {
    const identity = createIdentity();
    const first = x25519Of(identity);
    first.publicKey.fill(0);
    first.privateKey.fill(0);
    expect(hex(x25519Of(identity).publicKey)).toBe(montgomeryOf(identity.publicKey));
  });

  it('wraps a library key that only the addressed member opens', () => {
    const cipher = defaultXChaCha();
    const owner = createIdentity();
    const member = createIdentity();
    const stranger = createIdentity();
    const libraryKey = randomBytes(32);
    const wrap = decodeKeyWrap(
      wrapKey(libraryKey, 3, { deviceId: member.deviceId, x25519PublicKey: x25519Of(member).publicKey }, owner, 'store', cipher),
    );
    expect(hex(unwrapKey(wrap, member, 'store', cipher) ?? new Uint8Array())).toBe(hex(libraryKey));
    expect(unwrapKey(wrap, stranger, 'store', cipher)).toBeUndefined();
    expect(unwrapKey(wrap, member, 'other-store', cipher)).toBeUndefined();
  });
});

const child = new URL('./fixtures/key-paths-child.mjs', import.meta.url).pathname;
const childLimitMs = 120_000;

describe('node:crypto deadlock under garbage collection', () => {
  it(
    'creates identities and wraps keys 10,000 times under constant collection without hanging',
    async () => {
      // Bounded: a deadlocked child sits at 0% CPU forever, so it is killed and the test fails.
      const outcome = await runChild('node', ['--max-semi-space-size=1', child, '10000'], { limitMs: childLimitMs });
      const last = outcome.stdout.trim().split('\n').at(-1);
      expect(outcome.timedOut, `the child hung after "${last}" and was killed after ${childLimitMs / 1000} s`).toBe(false);
      expect(outcome.stderr).toBe('');
      expect(outcome.code).toBe(0);
      expect(last).toBe('done 10000');
    },
    childLimitMs + 30_000,
  );
});
