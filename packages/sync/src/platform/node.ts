/**
 * The cryptography `@weft/sync` takes from node:crypto (Node.js, Bun,
 * Deno): SHA-2, HMAC, HKDF, Ed25519 and X25519 on raw key bytes. Selected by
 * the `#platform` import's `default` condition; `browser.ts` gives the same
 * functions, the same bytes, from @noble/curves and @noble/hashes.
 *
 * Raw key bytes come out of node:crypto as DER with its fixed prefix cut off,
 * never as JWK: on Node 20 a JWK export holds the key's mutex while it
 * allocates, and a garbage collection inside it that finalises the
 * `generateKeyPairSync` job of the same key takes that mutex again and hangs
 * the process forever (docs/security.md). The DER writers take no lock.
 * Imported key objects are kept: importing a key costs more than using it.
 */
import {
  createHash,
  createHmac,
  createPrivateKey,
  createPublicKey,
  diffieHellman,
  generateKeyPairSync,
  hkdfSync,
  type KeyObject,
  sign,
  verify,
} from 'node:crypto';
import { hasSmallOrder } from './small-order.js';

// DER prefixes of PKCS#8 private and SPKI public keys of Ed25519 and X25519; the raw 32 bytes follow.
const prefixes = {
  ed25519: { pkcs8: Buffer.from('302e020100300506032b657004220420', 'hex'), spki: Buffer.from('302a300506032b6570032100', 'hex') },
  x25519: { pkcs8: Buffer.from('302e020100300506032b656e04220420', 'hex'), spki: Buffer.from('302a300506032b656e032100', 'hex') },
};
type Curve = keyof typeof prefixes;

const privateKeys = new WeakMap<Uint8Array, KeyObject>();
const publicKeys = new Map<string, KeyObject>();

function privateKeyObject(curve: Curve, privateKey: Uint8Array): KeyObject {
  let key = privateKeys.get(privateKey);
  if (key === undefined) {
    key = createPrivateKey({ key: Buffer.concat([prefixes[curve].pkcs8, privateKey]), format: 'der', type: 'pkcs8' });
    privateKeys.set(privateKey, key);
  }
  return key;
}

function publicKeyObject(curve: Curve, publicKey: Uint8Array): KeyObject {
  const id = `${curve}:${Buffer.from(publicKey).toString('base64')}`;
  let key = publicKeys.get(id);
  if (key === undefined) {
    key = createPublicKey({ key: Buffer.concat([prefixes[curve].spki, publicKey]), format: 'der', type: 'spki' });
    if (publicKeys.size > 10_000) publicKeys.clear();
    publicKeys.set(id, key);
  }
  return key;
}

function rawPrivateKey(key: KeyObject): Uint8Array {
  return new Uint8Array(key.export({ format: 'der', type: 'pkcs8' }).subarray(-32));
}

function rawPublicKey(key: KeyObject): Uint8Array {
  return new Uint8Array(key.export({ format: 'der', type: 'spki' }).subarray(-32));
}

function generate(curve: Curve): { privateKey: Uint8Array; publicKey: Uint8Array } {
  const pair = curve === 'ed25519' ? generateKeyPairSync('ed25519') : generateKeyPairSync('x25519');
  const privateKey = rawPrivateKey(pair.privateKey);
  privateKeys.set(privateKey, pair.privateKey);
  return { privateKey, publicKey: rawPublicKey(pair.publicKey) };
}

export const sha256 = (data: Uint8Array): Uint8Array => new Uint8Array(createHash('sha256').update(data).digest());

export const sha512 = (data: Uint8Array): Uint8Array => new Uint8Array(createHash('sha512').update(data).digest());

export const hmacSha256 = (key: Uint8Array, data: Uint8Array): Uint8Array =>
  new Uint8Array(createHmac('sha256', key).update(data).digest());

export const hkdfSha256 = (secret: Uint8Array, salt: Uint8Array, info: Uint8Array, length: number): Uint8Array =>
  new Uint8Array(hkdfSync('sha256', secret, salt, info, length));

export const ed25519Generate = (): { privateKey: Uint8Array; publicKey: Uint8Array } => generate('ed25519');

export const ed25519PublicKey = (privateKey: Uint8Array): Uint8Array =>
  rawPublicKey(createPublicKey(privateKeyObject('ed25519', privateKey)));

export const ed25519Sign = (privateKey: Uint8Array, message: Uint8Array): Uint8Array =>
  new Uint8Array(sign(null, message, privateKeyObject('ed25519', privateKey)));

/** False for any malformed key or signature, and for a key or nonce of small order (small-order.ts). */
export function ed25519Verify(publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array): boolean {
  if (publicKey.length !== 32 || signature.length !== 64 || hasSmallOrder(publicKey) || hasSmallOrder(signature)) return false;
  try {
    return verify(null, message, publicKeyObject('ed25519', publicKey), signature);
  } catch {
    return false;
  }
}

export const x25519Generate = (): { privateKey: Uint8Array; publicKey: Uint8Array } => generate('x25519');

export const x25519PublicKey = (privateKey: Uint8Array): Uint8Array =>
  rawPublicKey(createPublicKey(privateKeyObject('x25519', privateKey)));

/** @throws when the result is all zeros (a small-order public key) */
export const x25519Shared = (privateKey: Uint8Array, publicKey: Uint8Array): Uint8Array =>
  new Uint8Array(diffieHellman({ privateKey: privateKeyObject('x25519', privateKey), publicKey: publicKeyObject('x25519', publicKey) }));
