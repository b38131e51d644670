/**
 * XChaCha20-Poly1305 (draft-irtf-cfrg-xchacha), three ways with
 * byte-identical output: `sodium`, libsodium's WebAssembly build (in
 * `sodium.ts`), `node`, node:crypto's ChaCha20-Poly1305 under an HChaCha20
 * subkey, and `noble`, @noble/ciphers' xchacha20poly1305 (the portable
 * path); `auto` (cipher-choice.ts) picks by length. Output is ciphertext
 * followed by the 16-byte tag.
 */

import { xchacha20poly1305 } from '@noble/ciphers/chacha.js';
import { nodeChaCha } from '#platform';

export const keySize = 32;
export const nonceSize = 24;
export const tagSize = 16;

/** One implementation of XChaCha20-Poly1305. `open` returns `undefined` when authentication fails. */
export interface XChaCha {
  readonly name: 'auto' | 'sodium' | 'node' | 'noble';
  seal(key: Uint8Array, nonce: Uint8Array, plaintext: Uint8Array, aad: Uint8Array): Uint8Array;
  open(key: Uint8Array, nonce: Uint8Array, sealed: Uint8Array, aad: Uint8Array): Uint8Array | undefined;
}

function readWord(bytes: Uint8Array, at: number): number {
  return (
    ((bytes[at] as number) | ((bytes[at + 1] as number) << 8) | ((bytes[at + 2] as number) << 16) | ((bytes[at + 3] as number) << 24)) >>> 0
  );
}

function writeWord(bytes: Uint8Array, at: number, word: number): void {
  bytes[at] = word & 0xff;
  bytes[at + 1] = (word >>> 8) & 0xff;
  bytes[at + 2] = (word >>> 16) & 0xff;
  bytes[at + 3] = (word >>> 24) & 0xff;
}

/**
 * HChaCha20: derives a 32-byte subkey from a key and the first 16 bytes of an
 * XChaCha nonce. Sixteen local words rather than an array: this runs once
 * per sealed payload.
 */
export function hchacha20(key: Uint8Array, nonce16: Uint8Array, out = new Uint8Array(32)): Uint8Array {
  let x0 = 0x61707865;
  let x1 = 0x3320646e;
  let x2 = 0x79622d32;
  let x3 = 0x6b206574;
  let x4 = readWord(key, 0);
  let x5 = readWord(key, 4);
  let x6 = readWord(key, 8);
  let x7 = readWord(key, 12);
  let x8 = readWord(key, 16);
  let x9 = readWord(key, 20);
  let x10 = readWord(key, 24);
  let x11 = readWord(key, 28);
  let x12 = readWord(nonce16, 0);
  let x13 = readWord(nonce16, 4);
  let x14 = readWord(nonce16, 8);
  let x15 = readWord(nonce16, 12);
  for (let round = 0; round < 10; round++) {
    // Column rounds.
    x0 = (x0 + x4) | 0;
    x12 ^= x0;
    x12 = (x12 << 16) | (x12 >>> 16);
    x8 = (x8 + x12) | 0;
    x4 ^= x8;
    x4 = (x4 << 12) | (x4 >>> 20);
    x0 = (x0 + x4) | 0;
    x12 ^= x0;
    x12 = (x12 << 8) | (x12 >>> 24);
    x8 = (x8 + x12) | 0;
    x4 ^= x8;
    x4 = (x4 << 7) | (x4 >>> 25);
    x1 = (x1 + x5) | 0;
    x13 ^= x1;
    x13 = (x13 << 16) | (x13 >>> 16);
    x9 = (x9 + x13) | 0;
    x5 ^= x9;
    x5 = (x5 << 12) | (x5 >>> 20);
    x1 = (x1 + x5) | 0;
    x13 ^= x1;
    x13 = (x13 << 8) | (x13 >>> 24);
    x9 = (x9 + x13) | 0;
    x5 ^= x9;
    x5 = (x5 << 7) | (x5 >>> 25);
    x2 = (x2 + x6) | 0;
    x14 ^= x2;
    x14 = (x14 << 16) | (x14 >>> 16);
    x10 = (x10 + x14) | 0;
    x6 ^= x10;
    x6 = (x6 << 12) | (x6 >>> 20);
    x2 = (x2 + x6) | 0;
    x14 ^= x2;
    x14 = (x14 << 8) | (x14 >>> 24);
    x10 = (x10 + x14) | 0;
    x6 ^= x10;
    x6 = (x6 << 7) | (x6 >>> 25);
    x3 = (x3 + x7) | 0;
    x15 ^= x3;
    x15 = (x15 << 16) | (x15 >>> 16);
    x11 = (x11 + x15) | 0;
    x7 ^= x11;
    x7 = (x7 << 12) | (x7 >>> 20);
    x3 = (x3 + x7) | 0;
    x15 ^= x3;
    x15 = (x15 << 8) | (x15 >>> 24);
    x11 = (x11 + x15) | 0;
    x7 ^= x11;
    x7 = (x7 << 7) | (x7 >>> 25);
    // Diagonal rounds.
    x0 = (x0 + x5) | 0;
    x15 ^= x0;
    x15 = (x15 << 16) | (x15 >>> 16);
    x10 = (x10 + x15) | 0;
    x5 ^= x10;
    x5 = (x5 << 12) | (x5 >>> 20);
    x0 = (x0 + x5) | 0;
    x15 ^= x0;
    x15 = (x15 << 8) | (x15 >>> 24);
    x10 = (x10 + x15) | 0;
    x5 ^= x10;
    x5 = (x5 << 7) | (x5 >>> 25);
    x1 = (x1 + x6) | 0;
    x12 ^= x1;
    x12 = (x12 << 16) | (x12 >>> 16);
    x11 = (x11 + x12) | 0;
    x6 ^= x11;
    x6 = (x6 << 12) | (x6 >>> 20);
    x1 = (x1 + x6) | 0;
    x12 ^= x1;
    x12 = (x12 << 8) | (x12 >>> 24);
    x11 = (x11 + x12) | 0;
    x6 ^= x11;
    x6 = (x6 << 7) | (x6 >>> 25);
    x2 = (x2 + x7) | 0;
    x13 ^= x2;
    x13 = (x13 << 16) | (x13 >>> 16);
    x8 = (x8 + x13) | 0;
    x7 ^= x8;
    x7 = (x7 << 12) | (x7 >>> 20);
    x2 = (x2 + x7) | 0;
    x13 ^= x2;
    x13 = (x13 << 8) | (x13 >>> 24);
    x8 = (x8 + x13) | 0;
    x7 ^= x8;
    x7 = (x7 << 7) | (x7 >>> 25);
    x3 = (x3 + x4) | 0;
    x14 ^= x3;
    x14 = (x14 << 16) | (x14 >>> 16);
    x9 = (x9 + x14) | 0;
    x4 ^= x9;
    x4 = (x4 << 12) | (x4 >>> 20);
    x3 = (x3 + x4) | 0;
    x14 ^= x3;
    x14 = (x14 << 8) | (x14 >>> 24);
    x9 = (x9 + x14) | 0;
    x4 ^= x9;
    x4 = (x4 << 7) | (x4 >>> 25);
  }
  writeWord(out, 0, x0);
  writeWord(out, 4, x1);
  writeWord(out, 8, x2);
  writeWord(out, 12, x3);
  writeWord(out, 16, x12);
  writeWord(out, 20, x13);
  writeWord(out, 24, x14);
  writeWord(out, 28, x15);
  return out;
}

/** Scratch for the subkey and the 12-byte nonce: the cipher copies both when it is created. */
const subkey = new Uint8Array(32);
const ietf = new Uint8Array(12);

function ietfNonce(nonce: Uint8Array): Uint8Array {
  for (let index = 0; index < 8; index++) ietf[4 + index] = nonce[16 + index] as number;
  return ietf;
}

/** The fast path: node:crypto ChaCha20-Poly1305 under an HChaCha20 subkey. */
export const nodeXChaCha: XChaCha = {
  name: 'node',
  seal(key, nonce, plaintext, aad) {
    const cipher = nodeChaCha.createCipheriv('chacha20-poly1305', hchacha20(key, nonce.subarray(0, 16), subkey), ietfNonce(nonce), {
      authTagLength: tagSize,
    });
    subkey.fill(0); // the cipher holds its own copy; no derived key stays in this module's memory
    cipher.setAAD(aad, { plaintextLength: plaintext.length });
    const head = cipher.update(plaintext);
    const tail = cipher.final();
    const tag = cipher.getAuthTag();
    const sealed = new Uint8Array(head.length + tail.length + tagSize);
    sealed.set(head, 0);
    sealed.set(tail, head.length);
    sealed.set(tag, head.length + tail.length);
    return sealed;
  },
  open(key, nonce, sealed, aad) {
    if (sealed.length < tagSize) return undefined;
    const body = sealed.subarray(0, sealed.length - tagSize);
    const decipher = nodeChaCha.createDecipheriv('chacha20-poly1305', hchacha20(key, nonce.subarray(0, 16), subkey), ietfNonce(nonce), {
      authTagLength: tagSize,
    });
    subkey.fill(0);
    decipher.setAAD(aad, { plaintextLength: body.length });
    decipher.setAuthTag(sealed.subarray(sealed.length - tagSize));
    const head = decipher.update(body);
    try {
      const tail = decipher.final();
      const plaintext = new Uint8Array(head.length + tail.length);
      plaintext.set(head, 0);
      plaintext.set(tail, head.length);
      return plaintext;
    } catch {
      return undefined;
    }
  },
};

/** The portable path: @noble/ciphers. */
export const nobleXChaCha: XChaCha = {
  name: 'noble',
  seal(key, nonce, plaintext, aad) {
    return xchacha20poly1305(key, nonce, aad).encrypt(plaintext);
  },
  open(key, nonce, sealed, aad) {
    try {
      return xchacha20poly1305(key, nonce, aad).decrypt(sealed);
    } catch {
      return undefined;
    }
  },
};

/** The implementation to use without loading libsodium: node:crypto when it has ChaCha20-Poly1305, otherwise @noble/ciphers. */
export function defaultXChaCha(): XChaCha {
  try {
    nodeXChaCha.seal(new Uint8Array(32), new Uint8Array(24), new Uint8Array(0), new Uint8Array(0));
    return nodeXChaCha;
  } catch {
    return nobleXChaCha;
  }
}
