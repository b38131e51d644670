/**
 * Sync's cryptography on the browser's side of `#platform`
 * (src/platform/browser.ts: @noble/curves and @noble/hashes) against Node's
 * (src/platform/node.ts: node:crypto). Devices on both sides share one
 * library, so every primitive must give the same bytes, and a signature one
 * side accepts the other must accept: a member who could craft an entry only
 * browsers (or only Node devices) accept would split the membership. The
 * Ed25519 grid crafts the signatures where verifiers are known to differ
 * (small-order keys and nonces, a torsion component in R, non-canonical
 * encodings, S at or past the group order); it runs on whichever Node.js
 * runs the tests, whose OpenSSL decides for node:crypto (3.0 in Node.js 22
 * takes small-order keys, 3.5 in Node.js 24 refuses them: weft refuses them
 * on both sides, src/platform/small-order.ts).
 */
import { ed25519 } from '@noble/curves/ed25519.js';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import * as browser from '../src/platform/browser.js';
import * as node from '../src/platform/node.js';

const seed = Number(process.env.WEFT_SEED ?? Date.now() % 2 ** 31);
const runs = process.env.WEFT_LONG === '1' ? 2_000 : 200;
const options = { numRuns: runs, seed, endOnFailure: true };
const hex = (text: string) => new Uint8Array(Buffer.from(text, 'hex'));
const bytes = fc.uint8Array({ maxLength: 300 });
const key32 = fc.uint8Array({ minLength: 32, maxLength: 32 });

describe('hashes, HMAC and HKDF', () => {
  it('give the same bytes on both sides', () => {
    console.log(`sync platform crypto: ${runs} runs, seed ${seed} (replay with WEFT_SEED=${seed})`);
    fc.assert(
      fc.property(bytes, bytes, bytes, fc.integer({ min: 1, max: 96 }), (a, b, c, length) => {
        expect(browser.sha256(a)).toEqual(node.sha256(a));
        expect(browser.sha512(a)).toEqual(node.sha512(a));
        expect(browser.hmacSha256(a, b)).toEqual(node.hmacSha256(a, b));
        expect(browser.hkdfSha256(a, b, c, length)).toEqual(node.hkdfSha256(a, b, c, length));
      }),
      options,
    );
  });
});

describe('X25519', () => {
  it('derives the same public keys and shared secrets on both sides, keys made on either', () => {
    fc.assert(
      fc.property(key32, fc.boolean(), (secret, browserMade) => {
        const other = (browserMade ? browser : node).x25519Generate();
        expect(browser.x25519PublicKey(other.privateKey)).toEqual(other.publicKey);
        expect(node.x25519PublicKey(other.privateKey)).toEqual(other.publicKey);
        const own = new Uint8Array(secret);
        expect(browser.x25519PublicKey(own)).toEqual(node.x25519PublicKey(own));
        expect(browser.x25519Shared(own, other.publicKey)).toEqual(node.x25519Shared(own, other.publicKey));
        expect(browser.x25519Shared(other.privateKey, node.x25519PublicKey(own))).toEqual(node.x25519Shared(own, other.publicKey));
      }),
      options,
    );
  });

  it('refuses a small-order public key (an all-zero secret) on both sides', () => {
    const own = node.x25519Generate().privateKey;
    for (const point of ['00'.repeat(32), `01${'00'.repeat(31)}`, 'e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800']) {
      expect(() => node.x25519Shared(own, hex(point))).toThrow();
      expect(() => browser.x25519Shared(own, hex(point))).toThrow();
    }
  });
});

describe('Ed25519', () => {
  it('derives the same public key and signature on both sides, and each verifies the other', () => {
    fc.assert(
      fc.property(key32, bytes, (secret, message) => {
        const privateKey = new Uint8Array(secret);
        const publicKey = node.ed25519PublicKey(privateKey);
        expect(browser.ed25519PublicKey(privateKey)).toEqual(publicKey);
        const signature = node.ed25519Sign(privateKey, message);
        expect(browser.ed25519Sign(privateKey, message)).toEqual(signature);
        expect(browser.ed25519Verify(publicKey, message, signature)).toBe(true);
        expect(node.ed25519Verify(publicKey, message, signature)).toBe(true);
        const bent = new Uint8Array(signature);
        bent[message.length % 64] = (bent[message.length % 64] as number) ^ 1;
        expect(browser.ed25519Verify(publicKey, message, bent)).toBe(false);
        expect(node.ed25519Verify(publicKey, message, bent)).toBe(false);
      }),
      options,
    );
  });

  it('verifies alike before and after a key often used gets its precomputed multiples (from its 16th use in a browser)', () => {
    const { privateKey, publicKey } = node.ed25519Generate();
    for (let index = 0; index < 40; index++) {
      const message = new TextEncoder().encode(`entry ${index}`);
      const signature = node.ed25519Sign(privateKey, message);
      const bent = new Uint8Array(signature);
      bent[index % 64] = (bent[index % 64] as number) ^ 0x10;
      expect(browser.ed25519Verify(publicKey, message, signature), `signature ${index}`).toBe(true);
      expect(browser.ed25519Verify(publicKey, message, bent), `bent signature ${index}`).toBe(node.ed25519Verify(publicKey, message, bent));
      expect(browser.ed25519Verify(publicKey, new TextEncoder().encode(`other ${index}`), signature)).toBe(false);
    }
  });

  // The eight points of small order, and encodings that are not canonical (y at or past p, x = 0 with the sign bit set).
  const smallOrder = [
    `01${'00'.repeat(31)}`,
    `ec${'ff'.repeat(30)}7f`,
    `${'00'.repeat(31)}80`,
    '00'.repeat(32),
    'c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a',
    'c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa',
    '26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05',
    '26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85',
  ];
  const nonCanonical = [
    `ed${'ff'.repeat(30)}7f`,
    `ee${'ff'.repeat(30)}7f`,
    `ed${'ff'.repeat(30)}ff`,
    `01${'00'.repeat(30)}80`,
    `${'ff'.repeat(31)}7f`,
  ];
  const L = 2n ** 252n + 27742317777372353535851937790883648493n;
  const le = (value: bigint) => {
    const out = new Uint8Array(32);
    for (let index = 0; index < 32; index++) out[index] = Number((value >> BigInt(8 * index)) & 255n);
    return out;
  };
  const fromLe = (data: Uint8Array) => data.reduceRight((sum, byte) => (sum << 8n) + BigInt(byte), 0n);
  const concat = (...parts: Uint8Array[]) => {
    const out = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
    let at = 0;
    for (const part of parts) {
      out.set(part, at);
      at += part.length;
    }
    return out;
  };

  /** A signature made by hand: nonce point `R` (encoded), scalar `S`. */
  const signature = (R: Uint8Array, S: bigint) => concat(R, le(S));

  it('agrees on every crafted signature: small-order keys and nonces, torsion in R, non-canonical encodings, S past the order', () => {
    const { Point } = ed25519;
    const message = new TextEncoder().encode('membership entry');
    const cases: { name: string; publicKey: Uint8Array; signature: Uint8Array }[] = [];
    // An honest key a with A = aB, and signatures made by hand with its scalar.
    const secret = hex('9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60');
    const publicKey = node.ed25519PublicKey(secret);
    const expanded = node.sha512(secret);
    const a = ((fromLe(expanded.slice(0, 32)) & ((1n << 254n) - 8n)) | (1n << 254n)) % L;
    const honest = node.ed25519Sign(secret, message);
    const S = fromLe(honest.slice(32));
    cases.push({ name: 'honest', publicKey, signature: honest });
    cases.push({ name: 'S + L', publicKey, signature: signature(honest.slice(0, 32), S + L) });
    cases.push({ name: 'S + 2^256 - L wraps', publicKey, signature: signature(honest.slice(0, 32), (S + 2n ** 256n - L) % 2n ** 256n) });
    for (const torsion of smallOrder.slice(1)) {
      // R' = rB + T: the cofactored equation accepts it, the cofactorless one does not.
      let T: ReturnType<typeof Point.fromBytes>;
      try {
        T = Point.fromBytes(hex(torsion), true);
      } catch {
        continue;
      }
      const r = 1234567n;
      const R = Point.BASE.multiply(r).add(T).toBytes();
      const k = fromLe(node.sha512(concat(R, publicKey, message))) % L;
      cases.push({ name: `torsion in R (${torsion.slice(0, 8)})`, publicKey, signature: signature(R, (r + k * a) % L) });
    }
    {
      // R the identity, made valid by the signer: S = k·a. Small-order R is refused everywhere.
      const R = hex(smallOrder[0] as string);
      const k = fromLe(node.sha512(concat(R, publicKey, message))) % L;
      cases.push({ name: 'small-order R (identity), S = ka', publicKey, signature: signature(R, (k * a) % L) });
    }
    for (const A of [...smallOrder, ...nonCanonical]) {
      for (const R of [...smallOrder, ...nonCanonical]) {
        for (const s of [0n, 1n, L, S])
          cases.push({ name: `A ${A.slice(0, 8)}.. R ${R.slice(0, 8)}.. S ${s}`, publicKey: hex(A), signature: signature(hex(R), s) });
      }
    }
    // A non-canonical encoding of the honest nonce R (y + p): the same point, other bytes.
    const p = 2n ** 255n - 19n;
    const y = fromLe(honest.slice(0, 32)) & ((1n << 255n) - 1n);
    if (y + p < 2n ** 255n) {
      const bent = le(y + p);
      bent[31] = (bent[31] as number) | ((honest[31] as number) & 0x80);
      cases.push({ name: 'R not canonical', publicKey, signature: concat(bent, honest.slice(32)) });
    }
    const verdicts = cases.map(({ name, publicKey: key, signature: sig }) => ({
      name,
      node: node.ed25519Verify(key, message, sig),
      browser: browser.ed25519Verify(key, message, sig),
      cofactored: (() => {
        try {
          return ed25519.verify(sig, message, key);
        } catch {
          return false;
        }
      })(),
    }));
    const disagreements = verdicts.filter((verdict) => verdict.node !== verdict.browser);
    const accepted = verdicts.filter((verdict) => verdict.node).length;
    console.log(`ed25519 crafted signatures: ${cases.length}, accepted by node:crypto ${accepted}, disagreements: ${disagreements.length}`);
    expect(disagreements).toEqual([]);
    // The grid holds signatures other verifiers take: the torsion ones pass a cofactored verifier; small-order keys
    // and nonces pass OpenSSL 3.0 (Node.js 22) and are refused here on every runtime.
    expect(accepted).toBeGreaterThanOrEqual(1);
    expect(
      verdicts
        .filter((verdict) => verdict.name.startsWith('A ') || verdict.name.startsWith('small-order'))
        .some((verdict) => verdict.cofactored),
    ).toBe(true);
    expect(
      verdicts
        .filter((verdict) => verdict.name.startsWith('A ') || verdict.name.startsWith('small-order'))
        .every((verdict) => !verdict.node),
    ).toBe(true);
    const torsion = verdicts.filter((verdict) => verdict.name.startsWith('torsion'));
    expect(torsion.length).toBeGreaterThan(3);
    expect(torsion.every((verdict) => verdict.cofactored && !verdict.node)).toBe(true);
    expect(node.ed25519Verify(publicKey, message, honest)).toBe(true);
  });
});
