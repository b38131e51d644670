/**
 * The browser's side of `#platform` (node.ts is Node's): the same functions
 * and the same bytes from @noble/curves and @noble/hashes (audited, plain
 * JavaScript, synchronous as the rest of sync's crypto is). Ed25519
 * verifies exactly as node:crypto (OpenSSL) does, so a signature one device
 * accepts every other device accepts (test/platform.test.ts crafts the
 * signatures where verifiers differ).
 */
import { ed25519, x25519 } from '@noble/curves/ed25519.js';
import { hkdf } from '@noble/hashes/hkdf.js';
import { hmac } from '@noble/hashes/hmac.js';
import { sha256 as nobleSha256, sha512 as nobleSha512 } from '@noble/hashes/sha2.js';
import { hasSmallOrder } from './small-order.js';

export const sha256 = (data: Uint8Array): Uint8Array => nobleSha256(data);

export const sha512 = (data: Uint8Array): Uint8Array => nobleSha512(data);

export const hmacSha256 = (key: Uint8Array, data: Uint8Array): Uint8Array => hmac(nobleSha256, key, data);

export const hkdfSha256 = (secret: Uint8Array, salt: Uint8Array, info: Uint8Array, length: number): Uint8Array =>
  hkdf(nobleSha256, secret, salt, info, length);

export function ed25519Generate(): { privateKey: Uint8Array; publicKey: Uint8Array } {
  const privateKey = ed25519.utils.randomSecretKey();
  return { privateKey, publicKey: ed25519.getPublicKey(privateKey) };
}

export const ed25519PublicKey = (privateKey: Uint8Array): Uint8Array => ed25519.getPublicKey(privateKey);

export const ed25519Sign = (privateKey: Uint8Array, message: Uint8Array): Uint8Array => ed25519.sign(message, privateKey);

const order = 2n ** 252n + 27742317777372353535851937790883648493n;

type Point = InstanceType<typeof ed25519.Point>;
const keys = new Map<string, { readonly point: Point; uses: number }>();

/**
 * The decoded point of a public key (as ref10 decodes it: a y past p or an
 * x of 0 with the sign bit set are taken), or undefined when it is not a
 * point. Kept for the keys verified again and again (a library's members):
 * from a key's 16th use its multiples are precomputed (about 30 ms once),
 * which makes each later verification about three times faster.
 */
function keyPoint(publicKey: Uint8Array): Point | undefined {
  const id = String.fromCharCode(...publicKey);
  let entry = keys.get(id);
  if (entry === undefined) {
    let point: Point;
    try {
      point = ed25519.Point.fromBytes(publicKey, true);
    } catch {
      return undefined;
    }
    if (keys.size >= 1024) keys.clear();
    entry = { point, uses: 0 };
    keys.set(id, entry);
  }
  if (++entry.uses === 16) entry.point.precompute(8, false);
  return entry.point;
}

function littleEndian(bytes: Uint8Array): bigint {
  let value = 0n;
  for (let index = bytes.length - 1; index >= 0; index--) value = (value << 8n) | BigInt(bytes[index] as number);
  return value;
}

/**
 * False for any malformed key or signature, and for a key or nonce of small
 * order (small-order.ts). Otherwise OpenSSL's rules, which neither
 * of @noble/curves' modes gives: S below the group order; the key decoded
 * as ref10 decodes it (a y past p or an x of 0 with the sign bit set are
 * taken); the cofactorless equation, with R compared as the canonical
 * encoding of [S]B - [k]A, so a torsion component or a non-canonical R fails.
 */
export function ed25519Verify(publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array): boolean {
  if (publicKey.length !== 32 || signature.length !== 64 || hasSmallOrder(publicKey) || hasSmallOrder(signature)) return false;
  const s = littleEndian(signature.subarray(32));
  if (s >= order) return false;
  const key = keyPoint(publicKey);
  if (key === undefined) return false;
  const r = signature.subarray(0, 32);
  const hashed = new Uint8Array(64 + message.length);
  hashed.set(r, 0);
  hashed.set(publicKey, 32);
  hashed.set(message, 64);
  const k = littleEndian(nobleSha512(hashed)) % order;
  const check = ed25519.Point.BASE.multiplyUnsafe(s).subtract(key.multiplyUnsafe(k)).toBytes();
  for (let index = 0; index < 32; index++) if (check[index] !== r[index]) return false;
  return true;
}

export function x25519Generate(): { privateKey: Uint8Array; publicKey: Uint8Array } {
  const privateKey = x25519.utils.randomSecretKey();
  return { privateKey, publicKey: x25519.getPublicKey(privateKey) };
}

export const x25519PublicKey = (privateKey: Uint8Array): Uint8Array => x25519.getPublicKey(privateKey);

/** @throws when the result is all zeros (a small-order public key) */
export const x25519Shared = (privateKey: Uint8Array, publicKey: Uint8Array): Uint8Array => x25519.getSharedSecret(privateKey, publicKey);
