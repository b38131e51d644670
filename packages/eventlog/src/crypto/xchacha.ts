/**
 * XChaCha20-Poly1305 (draft-irtf-cfrg-xchacha), two ways with byte-identical
 * output: `node`, node:crypto's ChaCha20-Poly1305 under an HChaCha20 subkey
 * (the fast path), and `noble`, @noble/ciphers' xchacha20poly1305 (the
 * portable path). Output is ciphertext followed by the 16-byte tag.
 */
import { createCipheriv, createDecipheriv } from 'node:crypto';
import { xchacha20poly1305 } from '@noble/ciphers/chacha.js';

export const keySize = 32;
export const nonceSize = 24;
export const tagSize = 16;

/** One implementation of XChaCha20-Poly1305. `open` returns `undefined` when authentication fails. */
export interface XChaCha {
  readonly name: 'node' | 'noble';
  seal(key: Uint8Array, nonce: Uint8Array, plaintext: Uint8Array, aad: Uint8Array): Uint8Array;
  open(key: Uint8Array, nonce: Uint8Array, sealed: Uint8Array, aad: Uint8Array): Uint8Array | undefined;
}

const sigma = [0x61707865, 0x3320646e, 0x79622d32, 0x6b206574];

function rotl(value: number, shift: number): number {
  return (value << shift) | (value >>> (32 - shift));
}

/** HChaCha20: derives a 32-byte subkey from a key and the first 16 bytes of an XChaCha nonce. */
export function hchacha20(key: Uint8Array, nonce16: Uint8Array): Uint8Array {
  const keyView = new DataView(key.buffer, key.byteOffset, 32);
  const nonceView = new DataView(nonce16.buffer, nonce16.byteOffset, 16);
  const state = new Uint32Array(16);
  state.set(sigma, 0);
  for (let index = 0; index < 8; index++) state[4 + index] = keyView.getUint32(index * 4, true);
  for (let index = 0; index < 4; index++) state[12 + index] = nonceView.getUint32(index * 4, true);
  const quarter = (a: number, b: number, c: number, d: number) => {
    const s = state as unknown as number[];
    s[a] = (s[a] as number) + (s[b] as number);
    s[d] = rotl((s[d] as number) ^ (s[a] as number), 16);
    s[c] = (s[c] as number) + (s[d] as number);
    s[b] = rotl((s[b] as number) ^ (s[c] as number), 12);
    s[a] = (s[a] as number) + (s[b] as number);
    s[d] = rotl((s[d] as number) ^ (s[a] as number), 8);
    s[c] = (s[c] as number) + (s[d] as number);
    s[b] = rotl((s[b] as number) ^ (s[c] as number), 7);
  };
  for (let round = 0; round < 10; round++) {
    quarter(0, 4, 8, 12);
    quarter(1, 5, 9, 13);
    quarter(2, 6, 10, 14);
    quarter(3, 7, 11, 15);
    quarter(0, 5, 10, 15);
    quarter(1, 6, 11, 12);
    quarter(2, 7, 8, 13);
    quarter(3, 4, 9, 14);
  }
  const out = new Uint8Array(32);
  const outView = new DataView(out.buffer);
  for (let index = 0; index < 4; index++) {
    outView.setUint32(index * 4, state[index] as number, true);
    outView.setUint32(16 + index * 4, state[12 + index] as number, true);
  }
  return out;
}

function ietfNonce(nonce: Uint8Array): Uint8Array {
  const ietf = new Uint8Array(12);
  ietf.set(nonce.subarray(16, 24), 4);
  return ietf;
}

/** The fast path: node:crypto ChaCha20-Poly1305 under an HChaCha20 subkey. */
export const nodeXChaCha: XChaCha = {
  name: 'node',
  seal(key, nonce, plaintext, aad) {
    const cipher = createCipheriv('chacha20-poly1305', hchacha20(key, nonce.subarray(0, 16)), ietfNonce(nonce), { authTagLength: tagSize });
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
    const decipher = createDecipheriv('chacha20-poly1305', hchacha20(key, nonce.subarray(0, 16)), ietfNonce(nonce), {
      authTagLength: tagSize,
    });
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

/** The implementation to use: node:crypto when it has ChaCha20-Poly1305, otherwise @noble/ciphers. */
export function defaultXChaCha(): XChaCha {
  try {
    nodeXChaCha.seal(new Uint8Array(32), new Uint8Array(24), new Uint8Array(0), new Uint8Array(0));
    return nodeXChaCha;
  } catch {
    return nobleXChaCha;
  }
}
