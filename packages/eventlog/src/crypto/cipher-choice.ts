/** Which XChaCha20-Poly1305 implementation a `cipher` option names, and the default. */
import { EventLogError, EventLogErrorCode } from '../errors.js';
import { loadSodiumXChaCha } from './sodium.js';
import { defaultXChaCha, nobleXChaCha, nodeXChaCha, tagSize, type XChaCha } from './xchacha.js';

/** The name of an XChaCha20-Poly1305 implementation. */
export type CipherName = XChaCha['name'];

/**
 * `auto` seals payloads up to this size with libsodium and larger ones with
 * node:crypto: libsodium's one call wins on short payloads (1 KiB: 3.8 µs
 * against 7.5), node:crypto's vectorised ChaCha20 on long ones (16 KiB: 20
 * µs against 40); they cost the same at 3 to 4 KiB.
 */
const sodiumUpTo = 3 * 1024;

function autoXChaCha(sodium: XChaCha, node: XChaCha): XChaCha {
  return {
    name: 'auto',
    seal: (key, nonce, plaintext, aad) => (plaintext.length <= sodiumUpTo ? sodium : node).seal(key, nonce, plaintext, aad),
    open: (key, nonce, sealed, aad) => (sealed.length <= sodiumUpTo + tagSize ? sodium : node).open(key, nonce, sealed, aad),
  };
}

/**
 * The implementation `option` names. The default, `auto`, uses libsodium's
 * WebAssembly build for payloads up to 3 KiB and node:crypto above, falling
 * back to whichever of the two loads, then to @noble/ciphers. All give the
 * same bytes, so a log written under one reads under any other.
 *
 * @throws {EventLogError} `InvalidArgument` for an unknown name, or `sodium` where libsodium cannot load
 */
export async function loadXChaCha(option: CipherName = 'auto'): Promise<XChaCha> {
  if (option === 'node') return nodeXChaCha;
  if (option === 'noble') return nobleXChaCha;
  if (option !== 'auto' && option !== 'sodium') {
    throw new EventLogError(EventLogErrorCode.InvalidArgument, `cipher must be auto, sodium, node or noble, got ${String(option)}`);
  }
  const sodium = await loadSodiumXChaCha();
  if (option === 'sodium') {
    if (sodium === undefined)
      throw new EventLogError(EventLogErrorCode.InvalidArgument, "cipher 'sodium': libsodium's WebAssembly module could not be loaded");
    return sodium;
  }
  const fallback = defaultXChaCha();
  if (sodium === undefined) return fallback;
  return fallback === nodeXChaCha ? autoXChaCha(sodium, nodeXChaCha) : sodium;
}
