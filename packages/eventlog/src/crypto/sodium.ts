/**
 * XChaCha20-Poly1305 from libsodium (`crypto_aead_xchacha20poly1305_ietf`),
 * compiled to WebAssembly by the `libsodium` package: one call per seal or
 * open, where node:crypto needs a cipher object, an HChaCha20 subkey and
 * four calls (about half the time of a 1 KiB seal). Byte-identical to the
 * other two implementations (`xchacha.ts`).
 *
 * Each call copies its key, nonce, AAD and input into one region of the
 * module's memory and zeroes everything it used there before returning, so
 * no key or plaintext stays in that memory between calls.
 */
import { keySize, nonceSize, tagSize, type XChaCha } from './xchacha.js';

/** What this module uses of libsodium's WebAssembly build. */
interface SodiumModule {
  readonly HEAPU8: Uint8Array;
  _malloc(size: number): number;
  _free(pointer: number): void;
  _sodium_init(): number;
  _crypto_aead_xchacha20poly1305_ietf_encrypt(
    ciphertext: number,
    ciphertextLengthOut: number,
    message: number,
    messageLengthLow: number,
    messageLengthHigh: number,
    aad: number,
    aadLengthLow: number,
    aadLengthHigh: number,
    secretNonce: number,
    nonce: number,
    key: number,
  ): number;
  _crypto_aead_xchacha20poly1305_ietf_decrypt(
    message: number,
    messageLengthOut: number,
    secretNonce: number,
    ciphertext: number,
    ciphertextLengthLow: number,
    ciphertextLengthHigh: number,
    aad: number,
    aadLengthLow: number,
    aadLengthHigh: number,
    nonce: number,
    key: number,
  ): number;
}

type SodiumFactory = (options: { getRandomValue(): number }) => Promise<SodiumModule>;

/** Calls needing more than this get a region of their own, freed after the call; smaller ones share one. */
const sharedRegionBytes = 64 * 1024;

let loading: Promise<XChaCha | undefined> | undefined;

/** libsodium's XChaCha20-Poly1305, or `undefined` when its WebAssembly module cannot be loaded here. Loaded once. */
export function loadSodiumXChaCha(): Promise<XChaCha | undefined> {
  loading ??= (async () => {
    try {
      const factory = (await import('libsodium')).default as SodiumFactory;
      const sodium = await factory({ getRandomValue: () => globalThis.crypto.getRandomValues(new Uint32Array(1))[0] as number });
      if (sodium._sodium_init() < 0) return undefined;
      return sodiumXChaCha(sodium);
    } catch {
      return undefined;
    }
  })();
  return loading;
}

function sodiumXChaCha(sodium: SodiumModule): XChaCha {
  const shared = sodium._malloc(sharedRegionBytes);
  if (shared === 0) throw new Error('libsodium could not allocate its working memory');

  /** A region of at least `size` bytes: the shared one, or one of its own that {@link release} frees. */
  function reserve(size: number): number {
    if (size <= sharedRegionBytes) return shared;
    const base = sodium._malloc(size);
    if (base === 0) throw new RangeError(`libsodium could not allocate ${size} bytes`);
    return base;
  }

  /** Zeroes the `size` bytes a call used from `base`, and frees a region of its own. */
  function release(base: number, size: number): void {
    sodium.HEAPU8.fill(0, base, base + size);
    if (base !== shared) sodium._free(base);
  }

  function checkSizes(key: Uint8Array, nonce: Uint8Array): void {
    if (key.length !== keySize) throw new RangeError(`an XChaCha20-Poly1305 key is ${keySize} bytes, got ${key.length}`);
    if (nonce.length !== nonceSize) throw new RangeError(`an XChaCha20-Poly1305 nonce is ${nonceSize} bytes, got ${nonce.length}`);
  }

  // A region holds [key][nonce][aad][input][output].
  return {
    name: 'sodium',
    seal(key, nonce, plaintext, aad) {
      checkSizes(key, nonce);
      const sealedLength = plaintext.length + tagSize;
      const size = keySize + nonceSize + aad.length + plaintext.length + sealedLength;
      const base = reserve(size);
      try {
        const noncePointer = base + keySize;
        const aadPointer = noncePointer + nonceSize;
        const plaintextPointer = aadPointer + aad.length;
        const sealedPointer = plaintextPointer + plaintext.length;
        const heap = sodium.HEAPU8;
        heap.set(key, base);
        heap.set(nonce, noncePointer);
        heap.set(aad, aadPointer);
        heap.set(plaintext, plaintextPointer);
        const result = sodium._crypto_aead_xchacha20poly1305_ietf_encrypt(
          sealedPointer,
          0,
          plaintextPointer,
          plaintext.length,
          0,
          aadPointer,
          aad.length,
          0,
          0,
          noncePointer,
          base,
        );
        if (result !== 0) throw new Error('libsodium refused to seal');
        return sodium.HEAPU8.slice(sealedPointer, sealedPointer + sealedLength);
      } finally {
        release(base, size);
      }
    },
    open(key, nonce, sealed, aad) {
      checkSizes(key, nonce);
      if (sealed.length < tagSize) return undefined;
      const plaintextLength = sealed.length - tagSize;
      const size = keySize + nonceSize + aad.length + sealed.length + plaintextLength;
      const base = reserve(size);
      try {
        const noncePointer = base + keySize;
        const aadPointer = noncePointer + nonceSize;
        const sealedPointer = aadPointer + aad.length;
        const plaintextPointer = sealedPointer + sealed.length;
        const heap = sodium.HEAPU8;
        heap.set(key, base);
        heap.set(nonce, noncePointer);
        heap.set(aad, aadPointer);
        heap.set(sealed, sealedPointer);
        const result = sodium._crypto_aead_xchacha20poly1305_ietf_decrypt(
          plaintextPointer,
          0,
          0,
          sealedPointer,
          sealed.length,
          0,
          aadPointer,
          aad.length,
          0,
          noncePointer,
          base,
        );
        return result === 0 ? sodium.HEAPU8.slice(plaintextPointer, plaintextPointer + plaintextLength) : undefined;
      } finally {
        release(base, size);
      }
    },
  };
}
