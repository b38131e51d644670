/**
 * Device identities: Ed25519 key pairs. A device id is the first 16 bytes
 * of SHA-256 of the public key, in hex: it is a valid KV key token and is
 * bound to the key, so a changeset's author key proves its device. The
 * primitives come from `#platform` (node:crypto on Node.js, @noble/curves
 * in a browser).
 */
import { fromHex, toHex } from '@weft/common';
import { ed25519Generate, ed25519PublicKey, ed25519Sign, ed25519Verify, sha256 } from '#platform';
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

/** The device id of a public key. */
export function deviceIdOf(publicKey: Uint8Array): string {
  return toHex(sha256(publicKey)).slice(0, 32);
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
  return fromHex(deviceTagHex(deviceId));
}

/** A device's tag as hex (the first 12 hex digits of its device id): what {@link idTagHex} of its events gives. */
export function deviceTagHex(deviceId: string): string {
  return deviceId.slice(0, 12);
}

/** The tag of an event id as hex (its last 12 hex digits): see {@link idTagOf}. */
export function idTagHex(eventId: string): string {
  return eventId.slice(-12);
}

/** Creates a new random device identity. */
export function createIdentity(): DeviceIdentity {
  const { privateKey, publicKey } = ed25519Generate();
  return { deviceId: deviceIdOf(publicKey), publicKey, privateKey };
}

/** Rebuilds an identity from its 32-byte private key. */
export function identityFromPrivateKey(privateKey: Uint8Array): DeviceIdentity {
  if (!(privateKey instanceof Uint8Array) || privateKey.length !== 32) {
    throw new SyncError(SyncErrorCode.InvalidArgument, 'an Ed25519 private key is 32 bytes');
  }
  const own = new Uint8Array(privateKey);
  const publicKey = ed25519PublicKey(own);
  return { deviceId: deviceIdOf(publicKey), publicKey, privateKey: own };
}

/** Signs `message` with the identity's private key (Ed25519, 64 bytes). */
export function signWith(identity: DeviceIdentity, message: Uint8Array): Uint8Array {
  return ed25519Sign(identity.privateKey, message);
}

/** Checks an Ed25519 signature; any malformed input is simply `false`. */
export function verifySignature(publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array): boolean {
  if (publicKey.length !== 32 || signature.length !== 64) return false;
  return ed25519Verify(publicKey, message, signature);
}
