/**
 * Key agreement and key wrapping. Each device derives an X25519 key from its
 * Ed25519 identity (the clamped first half of SHA-512 of the seed, as
 * RFC 8032 derives the Ed25519 scalar); a library key is wrapped for a member
 * with an ephemeral X25519 key, HKDF-SHA256 and XChaCha20-Poly1305, and the
 * wrap is signed by the owner who made it (docs/formats/sync-membership.md).
 */

import { randomBytes } from '@weft/common';
import type { XChaCha } from '@weft/eventlog';
import { hkdfSha256, hmacSha256, sha512, x25519Generate, x25519PublicKey, x25519Shared } from '#platform';
import { concat } from './envelope.js';
import { SyncError, SyncErrorCode } from './errors.js';
import { type DeviceIdentity, signWith, verifySignature } from './identity.js';

const magic = new Uint8Array([0x57, 0x4b, 0x45, 0x59]); // "WKEY"
const version = 1;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

interface X25519Pair {
  readonly privateKey: Uint8Array;
  readonly publicKey: Uint8Array;
}

// A device's X25519 key is derived once per identity: importing a private key is the costly step.
const derived = new WeakMap<Uint8Array, X25519Pair>();

function x25519PairOf(identity: DeviceIdentity): X25519Pair {
  let pair = derived.get(identity.privateKey);
  if (pair === undefined) {
    const privateKey = sha512(identity.privateKey).slice(0, 32);
    privateKey[0] = (privateKey[0] as number) & 248;
    privateKey[31] = ((privateKey[31] as number) & 127) | 64;
    pair = { privateKey, publicKey: x25519PublicKey(privateKey) };
    derived.set(identity.privateKey, pair);
  }
  return pair;
}

/** The X25519 key pair a device derives from its identity. */
export function x25519Of(identity: DeviceIdentity): { privateKey: Uint8Array; publicKey: Uint8Array } {
  const { privateKey, publicKey } = x25519PairOf(identity);
  return { privateKey: new Uint8Array(privateKey), publicKey: new Uint8Array(publicKey) };
}

function keyEncryptionKey(
  shared: Uint8Array,
  ephemeral: Uint8Array,
  recipient: Uint8Array,
  storeId: string,
  generation: number,
): Uint8Array {
  const info = concat([encoder.encode('weft-key-wrap-v1'), encoder.encode(storeId), u32(generation)]);
  return hkdfSha256(shared, concat([ephemeral, recipient]), info, 32);
}

/**
 * The commitment to a library key of a generation, recorded in the
 * membership entry that creates the generation: HMAC-SHA256 keyed with the
 * key over a label, the store id and the generation. It reveals nothing of
 * the key, and no other key gives the same value.
 */
export function keyCommitment(libraryKey: Uint8Array, storeId: string, generation: number): Uint8Array {
  return hmacSha256(
    libraryKey,
    concat([encoder.encode('weft-key-commitment-v1'), u32(storeId.length), encoder.encode(storeId), u32(generation)]),
  );
}

/** A decoded key wrap. */
export interface KeyWrap {
  readonly member: string;
  readonly generation: number;
  readonly author: string;
  readonly authorKey: Uint8Array;
  readonly ephemeral: Uint8Array;
  readonly nonce: Uint8Array;
  readonly sealed: Uint8Array;
  readonly signed: Uint8Array;
  readonly signature: Uint8Array;
}

/** Wraps `libraryKey` of `generation` for a member, signed by `author`. */
export function wrapKey(
  libraryKey: Uint8Array,
  generation: number,
  member: { deviceId: string; x25519PublicKey: Uint8Array },
  author: DeviceIdentity,
  storeId: string,
  cipher: XChaCha,
): Uint8Array {
  const { privateKey: ephemeralKey, publicKey: ephemeral } = x25519Generate();
  const kek = keyEncryptionKey(x25519Shared(ephemeralKey, member.x25519PublicKey), ephemeral, member.x25519PublicKey, storeId, generation);
  const nonce = randomBytes(24);
  const header = concat([
    magic,
    new Uint8Array([version]),
    text8(member.deviceId),
    u32(generation),
    text8(author.deviceId),
    author.publicKey,
    ephemeral,
    nonce,
  ]);
  const sealed = cipher.seal(kek, nonce, libraryKey, header);
  const signed = concat([header, sealed]);
  return concat([signed, signWith(author, signed)]);
}

/**
 * Decodes a key wrap without trusting it.
 *
 * @throws {SyncError} `InvalidEnvelope`
 */
export function decodeKeyWrap(bytes: Uint8Array): KeyWrap {
  const invalid = (why: string) => new SyncError(SyncErrorCode.InvalidEnvelope, `key wrap: ${why}`);
  let at = 0;
  const need = (count: number) => {
    if (at + count > bytes.length) throw invalid('cut short');
  };
  need(5);
  for (let index = 0; index < 4; index++) if (bytes[index] !== magic[index]) throw invalid('bad magic');
  if (bytes[4] !== version) throw invalid(`unsupported version ${bytes[4]}`);
  at = 5;
  const readText = () => {
    need(1);
    const length = bytes[at] as number;
    need(1 + length);
    const value = decoder.decode(bytes.subarray(at + 1, at + 1 + length));
    at += 1 + length;
    return value;
  };
  const member = readText();
  need(4);
  const generation = new DataView(bytes.buffer, bytes.byteOffset + at, 4).getUint32(0, true);
  at += 4;
  const author = readText();
  need(32 + 32 + 24 + 48 + 64);
  const authorKey = bytes.slice(at, at + 32);
  const ephemeral = bytes.slice(at + 32, at + 64);
  const nonce = bytes.slice(at + 64, at + 88);
  const sealed = bytes.slice(at + 88, at + 136);
  const signed = bytes.subarray(0, at + 136);
  const signature = bytes.slice(at + 136, at + 200);
  if (bytes.length !== at + 200) throw invalid('trailing bytes');
  return { member, generation, author, authorKey, ephemeral, nonce, sealed, signed, signature };
}

/** Opens a wrap addressed to `identity`; `undefined` when the signature or the seal fails. */
export function unwrapKey(wrap: KeyWrap, identity: DeviceIdentity, storeId: string, cipher: XChaCha): Uint8Array | undefined {
  if (!verifySignature(wrap.authorKey, wrap.signed, wrap.signature)) return undefined;
  const own = x25519PairOf(identity);
  const kek = keyEncryptionKey(x25519Shared(own.privateKey, wrap.ephemeral), wrap.ephemeral, own.publicKey, storeId, wrap.generation);
  const header = wrap.signed.subarray(0, wrap.signed.length - wrap.sealed.length);
  const key = cipher.open(kek, wrap.nonce, wrap.sealed, header);
  return key?.length === 32 ? key : undefined;
}

function u32(value: number): Uint8Array {
  const bytes = new Uint8Array(4);
  new DataView(bytes.buffer).setUint32(0, value, true);
  return bytes;
}

function text8(value: string): Uint8Array {
  const bytes = encoder.encode(value);
  if (bytes.length > 255) throw new SyncError(SyncErrorCode.InvalidArgument, 'an id is at most 255 bytes');
  return concat([new Uint8Array([bytes.length]), bytes]);
}
