/**
 * The keyset: every payload key of an encrypted log, in one file written
 * atomically (temp file, fsync, rename, fsync of the directory), optionally
 * wrapped with a caller's master key. Format: docs/formats/keyset.md.
 */
import { randomBytes } from '@weft/common';
import { EventLogError, EventLogErrorCode } from '../errors.js';
import { FileSystemError, joinPath, type LogFileSystem } from '../fs/types.js';
import type { EventId } from '../ids.js';
import { formatUuid, writeUuid } from '../ids.js';
import { nonceSize, tagSize, type XChaCha } from './xchacha.js';

export const keysetFileName = 'keyset';
const temporaryName = 'keyset.tmp';
const magic = new Uint8Array([0x57, 0x45, 0x46, 0x54, 0x4b, 0x45, 0x59, 0x53]); // "WEFTKEYS"
const version = 1;
const headerSize = 16;
const flagWrapped = 1;

/** What a key is bound to; every key belongs to one scope. */
export type Granularity = 'entity' | 'scope' | 'kind' | 'event';
const granularityCodes: Record<Granularity, number> = { entity: 0, scope: 1, kind: 2, event: 3 };
const granularityNames: Granularity[] = ['entity', 'scope', 'kind', 'event'];

/** One key of the keyset. `material` is undefined once the key is shredded. */
export interface KeyEntry {
  readonly id: number;
  readonly granularity: Granularity;
  readonly scope: string;
  readonly entity: string | undefined;
  readonly kind: number | undefined;
  readonly eventId: EventId | undefined;
  material: Uint8Array | undefined;
}

/** Which keys a shred destroys: all fields given must match. */
export interface ShredTarget {
  readonly scope?: string;
  readonly entity?: string;
  readonly kind?: number;
  readonly eventId?: EventId;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: true });

function invalid(message: string, cause?: unknown): EventLogError {
  return new EventLogError(EventLogErrorCode.KeysetInvalid, message, cause === undefined ? {} : { cause });
}

/** The in-memory keyset and its file. */
export class Keyset {
  readonly entries = new Map<number, KeyEntry>();
  readonly #live = new Map<string, number>();
  #nextId = 1;
  #revision = 0;
  /** Changes so far, and how many of them the file on disk holds. */
  #changes = 0;
  #savedChanges = 0;
  /** Saves run one at a time. */
  #saving: Promise<void> = Promise.resolve();

  /** True when the keyset changed since it was last made durable (or the last attempt failed). */
  get dirty(): boolean {
    return this.#changes !== this.#savedChanges;
  }

  constructor(
    private readonly fs: LogFileSystem,
    private readonly dir: string,
    private readonly cipher: XChaCha,
    private readonly crc32c: (data: Uint8Array) => number,
    private readonly masterKey: Uint8Array | undefined,
  ) {}

  /** The key for a name, minting it (and marking the keyset dirty) when missing. */
  keyFor(name: string, make: () => Omit<KeyEntry, 'id' | 'material'>): KeyEntry {
    const id = this.#live.get(name);
    if (id !== undefined) return this.entries.get(id) as KeyEntry;
    const entry: KeyEntry = { ...make(), id: this.#nextId++, material: randomBytes(32) };
    this.entries.set(entry.id, entry);
    this.#live.set(name, entry.id);
    this.#changes++;
    return entry;
  }

  /** Destroys the material of every live key matching `target`; returns how many. */
  shred(target: ShredTarget): number {
    let count = 0;
    for (const [name, id] of [...this.#live]) {
      const entry = this.entries.get(id) as KeyEntry;
      if (target.scope !== undefined && entry.scope !== target.scope) continue;
      if (target.entity !== undefined && entry.entity !== target.entity) continue;
      if (target.kind !== undefined && entry.kind !== target.kind) continue;
      if (target.eventId !== undefined && entry.eventId !== target.eventId) continue;
      entry.material?.fill(0);
      entry.material = undefined;
      this.#live.delete(name);
      count++;
    }
    if (count > 0) this.#changes++;
    return count;
  }

  /** Writes the keyset durably: temp file, fsync, rename, fsync of the directory. */
  save(): Promise<void> {
    const run = this.#saving.then(() => this.#save());
    this.#saving = run.catch(() => undefined);
    return run;
  }

  async #save(): Promise<void> {
    if (!this.dirty && this.#revision > 0) return;
    const changes = this.#changes;
    this.#revision++;
    const bytes = this.encode();
    const temporary = joinPath(this.dir, temporaryName);
    if (await this.fs.exists(temporary)) await this.fs.unlink(temporary);
    const file = await this.fs.open(temporary, { create: true, exclusive: true });
    try {
      let written = 0;
      while (written < bytes.length) {
        const count = await file.write(bytes.subarray(written), written);
        if (count <= 0) throw new FileSystemError('EIO', 'the filesystem wrote nothing');
        written += count;
      }
      await file.sync();
    } finally {
      await file.close();
    }
    await this.fs.rename(temporary, joinPath(this.dir, keysetFileName));
    await this.fs.syncDir(this.dir);
    this.#savedChanges = Math.max(this.#savedChanges, changes);
  }

  /** Reads the keyset file; `false` when there is none. */
  async load(): Promise<boolean> {
    const path = joinPath(this.dir, keysetFileName);
    if (!(await this.fs.exists(path))) return false;
    const file = await this.fs.open(path);
    let bytes: Uint8Array;
    try {
      bytes = await file.read(0, await file.size());
    } finally {
      await file.close();
    }
    this.decode(bytes);
    return true;
  }

  encode(): Uint8Array {
    const parts: Uint8Array[] = [];
    const count = new Uint8Array(4);
    new DataView(count.buffer).setUint32(0, this.entries.size, true);
    parts.push(count);
    for (const entry of this.entries.values()) {
      const scope = encoder.encode(entry.scope);
      const entity = encoder.encode(entry.entity ?? '');
      const fixed = new Uint8Array(12 + 16 + 32);
      const view = new DataView(fixed.buffer);
      view.setUint32(0, entry.id, true);
      fixed[4] = entry.material === undefined ? 1 : 0;
      fixed[5] = granularityCodes[entry.granularity];
      view.setUint16(6, entry.kind ?? 0, true);
      fixed[8] = entry.kind === undefined ? 0 : 1;
      fixed[9] = entry.eventId === undefined ? 0 : 1;
      if (entry.eventId !== undefined) writeUuid(entry.eventId, fixed, 12);
      if (entry.material !== undefined) fixed.set(entry.material, 28);
      parts.push(fixed, u16(scope.length), scope, u16(entity.length), entity);
    }
    let body = concat(parts);
    const header = new Uint8Array(headerSize);
    header.set(magic, 0);
    header[8] = version;
    header[9] = this.masterKey === undefined ? 0 : flagWrapped;
    new DataView(header.buffer).setUint32(12, this.#revision, true);
    if (this.masterKey !== undefined) {
      const nonce = randomBytes(nonceSize);
      body = concat([nonce, this.cipher.seal(this.masterKey, nonce, body, header)]);
    }
    const withoutCrc = concat([header, body]);
    const crc = new Uint8Array(4);
    new DataView(crc.buffer).setUint32(0, this.crc32c(withoutCrc), true);
    return concat([withoutCrc, crc]);
  }

  decode(bytes: Uint8Array): void {
    if (bytes.length < headerSize + 8) throw invalid(`the keyset file is ${bytes.length} bytes, too short`);
    for (let index = 0; index < magic.length; index++)
      if (bytes[index] !== magic[index]) throw invalid('the keyset file has no keyset magic');
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    if (this.crc32c(bytes.subarray(0, bytes.length - 4)) !== view.getUint32(bytes.length - 4, true))
      throw invalid('the keyset file fails its CRC');
    if (bytes[8] !== version) throw invalid(`unsupported keyset version ${bytes[8]}`);
    const flags = bytes[9] as number;
    if ((flags & ~flagWrapped) !== 0) throw invalid('unknown keyset flags');
    const header = bytes.subarray(0, headerSize);
    let body = bytes.subarray(headerSize, bytes.length - 4);
    if (flags & flagWrapped) {
      if (this.masterKey === undefined) throw invalid('the keyset is wrapped with a master key; pass encryption.masterKey');
      if (body.length < nonceSize + tagSize) throw invalid('the wrapped keyset is too short');
      const opened = this.cipher.open(this.masterKey, body.subarray(0, nonceSize), body.subarray(nonceSize), header);
      if (opened === undefined) throw invalid('the master key does not open the keyset (wrong key, or the file was tampered with)');
      body = opened;
    } else if (this.masterKey !== undefined) {
      throw invalid('a master key was given but the keyset is not wrapped');
    }
    this.#revision = view.getUint32(12, true);
    this.#parseBody(body);
  }

  #parseBody(body: Uint8Array): void {
    const view = new DataView(body.buffer, body.byteOffset, body.byteLength);
    const need = (at: number, size: number) => {
      if (at + size > body.length) throw invalid('the keyset body is cut short');
    };
    need(0, 4);
    const count = view.getUint32(0, true);
    let at = 4;
    this.entries.clear();
    this.#live.clear();
    for (let index = 0; index < count; index++) {
      need(at, 60);
      const id = view.getUint32(at, true);
      const shredded = body[at + 4] === 1;
      const granularity = granularityNames[body[at + 5] as number];
      if (granularity === undefined) throw invalid(`key ${id} has an unknown granularity`);
      const kind = body[at + 8] === 1 ? view.getUint16(at + 6, true) : undefined;
      const eventId = body[at + 9] === 1 ? formatUuid(body, at + 12) : undefined;
      const material = shredded ? undefined : body.slice(at + 28, at + 60);
      at += 60;
      const readText = (): string => {
        need(at, 2);
        const length = view.getUint16(at, true);
        need(at + 2, length);
        try {
          const text = decoder.decode(body.subarray(at + 2, at + 2 + length));
          at += 2 + length;
          return text;
        } catch (error) {
          throw invalid(`key ${id} has a name that is not UTF-8`, error);
        }
      };
      const scope = readText();
      const entity = readText();
      const entry: KeyEntry = { id, granularity, scope, entity: entity === '' ? undefined : entity, kind, eventId, material };
      this.entries.set(id, entry);
      if (material !== undefined) this.#live.set(keyName(entry), id);
      this.#nextId = Math.max(this.#nextId, id + 1);
    }
    if (at !== body.length) throw invalid('the keyset body has trailing bytes');
  }
}

/** The name that identifies a live key for its granularity. */
export function keyName(entry: Pick<KeyEntry, 'granularity' | 'scope' | 'entity' | 'kind' | 'eventId'>): string {
  switch (entry.granularity) {
    case 'entity':
      return `e\u0000${entry.scope}\u0000${entry.entity}`;
    case 'scope':
      return `s\u0000${entry.scope}`;
    case 'kind':
      return `k\u0000${entry.scope}\u0000${entry.kind}`;
    case 'event':
      return `v\u0000${entry.scope}\u0000${entry.eventId}`;
  }
}

function u16(value: number): Uint8Array {
  const bytes = new Uint8Array(2);
  new DataView(bytes.buffer).setUint16(0, value, true);
  return bytes;
}

function concat(parts: readonly Uint8Array[]): Uint8Array {
  const total = parts.reduce((sum, part) => sum + part.length, 0);
  const out = new Uint8Array(total);
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}
