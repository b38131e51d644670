/**
 * Encrypt-on-append: every non-reserved payload is sealed with
 * XChaCha20-Poly1305 under its key before it is hashed and framed. The AAD
 * binds format version, entity, scope, kind and event id; the nonce is 24
 * random bytes. Reserved kinds stay plaintext and never mint a key.
 *
 * The durability fence: the log calls `beforeWrite` before any frame reaches
 * the file, and a dirty keyset (a key minted, a shred, an earlier failed
 * flush) is made durable first; if that fails, the appends fail and nothing
 * is written.
 */
import type { FrameHeader } from '../codec.js';
import { EventLogError, EventLogErrorCode } from '../errors.js';
import type { LogFileSystem } from '../fs/types.js';
import type { Hashers } from '../hash.js';
import { writeUuid } from '../ids.js';
import type { PayloadCodec, Sealed, SealInput } from '../payload-codec.js';
import { RandomPool } from '../random.js';
import type { LogEvent } from '../types.js';
import { type CipherName, loadXChaCha } from './cipher-choice.js';
import { type Granularity, type KeyEntry, Keyset, keyName, type ShredTarget } from './keyset.js';
import { nonceSize, type XChaCha } from './xchacha.js';

/** Nonces come from a pooled CSPRNG buffer: 24 random bytes per seal, each used once. */
const noncePool = new RandomPool();

/** Options of encryption. */
export interface EncryptionOptions {
  /** What one key covers. @default 'entity' */
  readonly granularity?: Granularity | undefined;
  /** 32 bytes; when given, the keyset file is wrapped with it. It is never stored. */
  readonly masterKey?: Uint8Array | undefined;
  /** Which XChaCha20-Poly1305 implementation to use (all give the same bytes). @default 'auto': libsodium's WebAssembly build up to 3 KiB, node:crypto above */
  readonly cipher?: CipherName | undefined;
}

const aadVersion = 1;
const encoder = new TextEncoder();

/** Encoded entity and scope names, kept for the next payload of the same name (bounded: cleared when full). */
const encodedNames = new Map<string, Uint8Array>();
const maxEncodedNames = 16_384;

function encodedName(name: string): Uint8Array {
  let bytes = encodedNames.get(name);
  if (bytes === undefined) {
    bytes = encoder.encode(name);
    // Once full, the cache keeps what it has (clearing would make more names than it holds miss every time).
    if (encodedNames.size < maxEncodedNames) encodedNames.set(name, bytes);
  }
  return bytes;
}

type AadInput = Pick<SealInput, 'entity' | 'scope' | 'kind' | 'id'>;

/**
 * Writes AADs into one reused buffer: the cipher copies the AAD when it is
 * set, so a seal or an open needs no AAD of its own. The view returned is
 * valid until the next `write`.
 */
class AadWriter {
  #buffer = new Uint8Array(256);

  write(input: AadInput): Uint8Array {
    const entity = encodedName(input.entity);
    const scope = encodedName(input.scope);
    const length = 1 + 2 + entity.length + 2 + scope.length + 2 + 16;
    if (length > this.#buffer.length) this.#buffer = new Uint8Array(Math.max(length, this.#buffer.length * 2));
    const aad = this.#buffer;
    aad[0] = aadVersion;
    aad[1] = entity.length & 0xff;
    aad[2] = entity.length >>> 8;
    aad.set(entity, 3);
    let at = 3 + entity.length;
    aad[at] = scope.length & 0xff;
    aad[at + 1] = scope.length >>> 8;
    aad.set(scope, at + 2);
    at += 2 + scope.length;
    aad[at] = input.kind & 0xff;
    aad[at + 1] = input.kind >>> 8;
    writeUuid(input.id, aad, at + 2);
    return aad.subarray(0, length);
  }
}

/** The AAD of a payload: format version, entity, scope, kind and event id. */
export function payloadAad(input: AadInput): Uint8Array {
  return new AadWriter().write(input).slice();
}

/** @internal the payload codec of an encrypted log. */
export class EncryptedCodec implements PayloadCodec {
  readonly keyset: Keyset;
  readonly #granularity: Granularity;
  readonly #cipher: XChaCha;
  readonly #aad = new AadWriter();
  /**
   * The live key of each entity's last seal, with its scope ('entity'
   * granularity): finding a key by name cost a binding object and a name
   * string per payload. Dropped whenever the keyset changes (shred, reload).
   */
  readonly #entityKeys = new Map<string, { scope: string; key: KeyEntry }>();

  private constructor(keyset: Keyset, granularity: Granularity, cipher: XChaCha) {
    this.keyset = keyset;
    this.#granularity = granularity;
    this.#cipher = cipher;
  }

  /**
   * Loads the keyset, or creates an empty one durably for a new log. A log
   * that already has segments but no keyset refuses to open.
   */
  static async open(
    fs: LogFileSystem,
    dir: string,
    options: EncryptionOptions,
    hashers: Hashers,
    hasSegments: boolean,
    readOnly = false,
  ): Promise<EncryptedCodec> {
    const granularity = options.granularity ?? 'entity';
    if (!['entity', 'scope', 'kind', 'event'].includes(granularity)) {
      throw new EventLogError(
        EventLogErrorCode.InvalidArgument,
        `granularity must be entity, scope, kind or event, got ${String(granularity)}`,
      );
    }
    const masterKey = options.masterKey;
    if (masterKey !== undefined && (!(masterKey instanceof Uint8Array) || masterKey.length !== 32)) {
      throw new EventLogError(EventLogErrorCode.InvalidArgument, 'masterKey must be 32 bytes');
    }
    const cipher = await loadXChaCha(options.cipher);
    const keyset = new Keyset(fs, dir, cipher, hashers.crc32c, masterKey === undefined ? undefined : new Uint8Array(masterKey));
    if (!(await keyset.load())) {
      if (hasSegments || readOnly) {
        throw new EventLogError(
          EventLogErrorCode.KeysetMissing,
          `encryption is on but ${dir} has no keyset file; refusing to start with an empty one (restore the keyset, or open without encryption)`,
        );
      }
      await keyset.save();
    }
    return new EncryptedCodec(keyset, granularity, cipher);
  }

  seal(input: SealInput, out: Sealed): void {
    if (input.reserved) {
      out.stored = input.payload;
      out.encryption = undefined;
      return;
    }
    const key = this.#keyFor(input);
    const nonce = noncePool.take(nonceSize);
    out.stored = this.#cipher.seal(key.material as Uint8Array, nonce, input.payload, this.#aad.write(input));
    out.encryption = { keyId: key.id, nonce };
  }

  #keyFor(input: SealInput): KeyEntry {
    const granularity = this.#granularity;
    if (granularity === 'entity') {
      const cached = this.#entityKeys.get(input.entity);
      if (cached !== undefined && cached.scope === input.scope && cached.key.material !== undefined) return cached.key;
    }
    const binding = {
      granularity,
      scope: input.scope,
      entity: granularity === 'entity' || granularity === 'event' ? input.entity : undefined,
      kind: granularity === 'kind' ? input.kind : undefined,
      eventId: granularity === 'event' ? input.id : undefined,
    };
    const key = this.keyset.keyFor(keyName(binding), () => binding);
    if (granularity === 'entity') {
      if (this.#entityKeys.size < maxEncodedNames || this.#entityKeys.has(input.entity)) {
        this.#entityKeys.set(input.entity, { scope: input.scope, key });
      }
    }
    return key;
  }

  disposition(header: FrameHeader): 'plain' | 'shredded' | 'sealed' {
    if (header.encryption === undefined) return 'plain';
    return this.#keyOf(header, header.encryption.keyId).material === undefined ? 'shredded' : 'sealed';
  }

  #keyOf(header: FrameHeader, keyId: number) {
    const key = this.keyset.entries.get(keyId);
    if (key === undefined) {
      throw new EventLogError(EventLogErrorCode.KeysetInvalid, `event ${header.id} needs key ${keyId}, which the keyset does not have`);
    }
    return key;
  }

  open(header: FrameHeader, stored: Uint8Array): { payload: Uint8Array; disposition: LogEvent['disposition'] } {
    if (header.encryption === undefined) return { payload: stored, disposition: 'plain' };
    const key = this.#keyOf(header, header.encryption.keyId);
    if (key.material === undefined) return { payload: new Uint8Array(0), disposition: 'shredded' };
    const payload = this.#cipher.open(key.material, header.encryption.nonce, stored, this.#aad.write(header));
    if (payload === undefined) {
      throw new EventLogError(
        EventLogErrorCode.DecryptionFailed,
        `event ${header.id} at position ${header.position} failed authentication: it was tampered with`,
      );
    }
    return { payload, disposition: 'decrypted' };
  }

  async beforeWrite(): Promise<void> {
    if (!this.keyset.dirty) return;
    try {
      await this.keyset.save();
    } catch (error) {
      throw new EventLogError(
        EventLogErrorCode.IoFailed,
        `the keyset could not be made durable, so nothing was written: ${error instanceof Error ? error.message : String(error)}`,
        {
          cause: error,
        },
      );
    }
  }

  async reload(): Promise<void> {
    this.#entityKeys.clear();
    await this.keyset.load();
  }

  checkRecovered(header: FrameHeader): void {
    if (header.encryption !== undefined && !this.keyset.entries.has(header.encryption.keyId)) {
      throw new EventLogError(
        EventLogErrorCode.KeysetInvalid,
        `event at position ${header.position} was encrypted with key ${header.encryption.keyId}, which the keyset does not have (was the keyset replaced by an older copy?)`,
      );
    }
  }

  /** Destroys matching keys durably. */
  async shred(target: ShredTarget): Promise<number> {
    this.#entityKeys.clear();
    const count = this.keyset.shred(target);
    if (this.keyset.dirty) await this.beforeWrite();
    return count;
  }
}
