/**
 * Device identities: Ed25519 key pairs (node:crypto). A device id is the
 * first 16 bytes of SHA-256 of the public key, in hex: it is a valid KV key
 * token and is bound to the key, so a changeset's author key proves its device.
 */
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject, sign, verify } from 'node:crypto';
import { SyncError, SyncErrorCode } from './errors.js';

/** A device's signing identity. Keep `privateKey` secret; share `publicKey`. */
export interface DeviceIdentity {
  readonly deviceId: string;
  readonly publicKey: Uint8Array;
  readonly privateKey: Uint8Array;
}

/** The public part of an identity: what other members know. */
export interface DevicePublic {
  readonly deviceId: string;
  readonly publicKey: Uint8Array;
}

const base64url = (bytes: Uint8Array) => Buffer.from(bytes).toString('base64url');
// DER prefixes of an Ed25519 PKCS#8 private key and SPKI public key; the raw 32 bytes follow.
const pkcs8Prefix = Buffer.from('302e020100300506032b657004220420', 'hex');
const spkiPrefix = Buffer.from('302a300506032b6570032100', 'hex');

function privateKeyObject(privateKey: Uint8Array): KeyObject {
  return createPrivateKey({ key: Buffer.concat([pkcs8Prefix, privateKey]), format: 'der', type: 'pkcs8' });
}

function publicKeyObject(publicKey: Uint8Array): KeyObject {
  return createPublicKey({ key: Buffer.concat([spkiPrefix, publicKey]), format: 'der', type: 'spki' });
}

/** The device id of a public key. */
export function deviceIdOf(publicKey: Uint8Array): string {
  return createHash('sha256').update(publicKey).digest('hex').slice(0, 32);
}

/** Creates a new random device identity. */
export function createIdentity(): DeviceIdentity {
  const { privateKey } = generateKeyPairSync('ed25519');
  const jwk = privateKey.export({ format: 'jwk' }) as { d: string; x: string };
  const publicKey = new Uint8Array(Buffer.from(jwk.x, 'base64url'));
  return { deviceId: deviceIdOf(publicKey), publicKey, privateKey: new Uint8Array(Buffer.from(jwk.d, 'base64url')) };
}

/** Rebuilds an identity from its 32-byte private key. */
export function identityFromPrivateKey(privateKey: Uint8Array): DeviceIdentity {
  if (!(privateKey instanceof Uint8Array) || privateKey.length !== 32) {
    throw new SyncError(SyncErrorCode.InvalidArgument, 'an Ed25519 private key is 32 bytes');
  }
  const jwk = createPublicKey(privateKeyObject(privateKey)).export({ format: 'jwk' }) as { x: string };
  const publicKey = new Uint8Array(Buffer.from(jwk.x, 'base64url'));
  return { deviceId: deviceIdOf(publicKey), publicKey, privateKey: new Uint8Array(privateKey) };
}

const privateKeys = new WeakMap<Uint8Array, KeyObject>();
const publicKeys = new Map<string, KeyObject>();

/** Signs `message` with the identity's private key (Ed25519, 64 bytes). */
export function signWith(identity: DeviceIdentity, message: Uint8Array): Uint8Array {
  let key = privateKeys.get(identity.privateKey);
  if (key === undefined) {
    key = privateKeyObject(identity.privateKey);
    privateKeys.set(identity.privateKey, key);
  }
  return new Uint8Array(sign(null, message, key));
}

/** Checks an Ed25519 signature; any malformed input is simply `false`. */
export function verifySignature(publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array): boolean {
  if (publicKey.length !== 32 || signature.length !== 64) return false;
  const id = base64url(publicKey);
  let key = publicKeys.get(id);
  try {
    if (key === undefined) {
      key = publicKeyObject(publicKey);
      if (publicKeys.size > 10_000) publicKeys.clear();
      publicKeys.set(id, key);
    }
    return verify(null, message, key, signature);
  } catch {
    return false;
  }
}
