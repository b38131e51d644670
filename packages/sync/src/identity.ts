/**
 * Device identities: Ed25519 key pairs (node:crypto). A device id is the
 * first 16 bytes of SHA-256 of the public key, in hex: it is a valid KV key
 * token and is bound to the key, so a changeset's author key proves its device.
 *
 * Raw key bytes come out of node:crypto as DER with its fixed prefix cut off,
 * never as JWK: on Node 20 a JWK export holds the key's mutex while it
 * allocates, and a garbage collection inside it that finalises the
 * `generateKeyPairSync` job of the same key takes that mutex again and hangs
 * the process forever (docs/security.md). The DER writers take no lock.
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

/**
 * What a signature bound to library `libraryId` covers: the library id
 * (1-byte length, UTF-8), then `signed`. The id is not stored with the object:
 * another library's object does not verify (membership entries, manifests).
 *
 * @throws {SyncError} `InvalidArgument` for an id over 255 bytes
 */
export function libraryBound(libraryId: string, signed: Uint8Array): Uint8Array {
  const library = new TextEncoder().encode(libraryId);
  if (library.length > 255) throw new SyncError(SyncErrorCode.InvalidArgument, 'a library id has at most 255 bytes');
  const bound = new Uint8Array(1 + library.length + signed.length);
  bound[0] = library.length;
  bound.set(library, 1);
  bound.set(signed, 1 + library.length);
  return bound;
}

/**
 * The tag a device puts in the last 6 bytes of the ids of events it writes
 * (the first 6 bytes of its device id): an event id names its author, so a
 * member that republishes another member's event is caught. Finding a key
 * whose device id shares these 48 bits with another member's is out of reach.
 */
export function idTagOf(deviceId: string): Uint8Array {
  return new Uint8Array(Buffer.from(deviceTagHex(deviceId), 'hex'));
}

/** A device's tag as hex (the first 12 hex digits of its device id): what {@link idTagHex} of its events gives. */
export function deviceTagHex(deviceId: string): string {
  return deviceId.slice(0, 12);
}

/** The tag of an event id as hex (its last 12 hex digits): see {@link idTagOf}. */
export function idTagHex(eventId: string): string {
  return eventId.slice(-12);
}

/** The raw 32 bytes of an Ed25519 or X25519 private key object (the tail of its PKCS#8 DER). */
export function rawPrivateKey(key: KeyObject): Uint8Array {
  return new Uint8Array(key.export({ format: 'der', type: 'pkcs8' }).subarray(-32));
}

/** The raw 32 bytes of an Ed25519 or X25519 public key object (the tail of its SPKI DER). */
export function rawPublicKey(key: KeyObject): Uint8Array {
  return new Uint8Array(key.export({ format: 'der', type: 'spki' }).subarray(-32));
}

const privateKeys = new WeakMap<Uint8Array, KeyObject>();

function identityOf(privateKey: Uint8Array, publicKey: Uint8Array, keyObject: KeyObject): DeviceIdentity {
  // The key object is kept for signing, so a new identity never imports its key again.
  privateKeys.set(privateKey, keyObject);
  return { deviceId: deviceIdOf(publicKey), publicKey, privateKey };
}

/** Creates a new random device identity. */
export function createIdentity(): DeviceIdentity {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  return identityOf(rawPrivateKey(privateKey), rawPublicKey(publicKey), privateKey);
}

/** Rebuilds an identity from its 32-byte private key. */
export function identityFromPrivateKey(privateKey: Uint8Array): DeviceIdentity {
  if (!(privateKey instanceof Uint8Array) || privateKey.length !== 32) {
    throw new SyncError(SyncErrorCode.InvalidArgument, 'an Ed25519 private key is 32 bytes');
  }
  const keyObject = privateKeyObject(privateKey);
  return identityOf(new Uint8Array(privateKey), rawPublicKey(createPublicKey(keyObject)), keyObject);
}

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
