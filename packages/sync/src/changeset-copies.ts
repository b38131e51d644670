/**
 * A device's copies of the changesets it pushed or verified, byte for byte:
 * what it writes back when the store forgets them (docs/protocols/sync.md,
 * "When the store forgets"). One append-only file next to the sync state,
 * `sync-changesets.bin`, of records:
 *
 *     u32 length of what follows, u8 device id length, device id,
 *     u64 seq, envelope bytes
 *
 * A record cut short at the end (a crash in the middle of an append) is cut
 * off when the file is opened. The envelopes verify themselves (signed,
 * chained), so a copy is checked again before it is written back.
 */
import type { LogFile, LogFileSystem } from '@weft/eventlog';
import { SyncError, SyncErrorCode } from './errors.js';

const fileName = 'sync-changesets.bin';
const chunkBytes = 1 << 20;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

export class ChangesetCopies {
  readonly #file: LogFile;
  readonly #index = new Map<string, Map<number, { at: number; length: number }>>();
  #size: number;
  #dirty = false;

  private constructor(file: LogFile, size: number) {
    this.#file = file;
    this.#size = size;
  }

  /** Opens (or creates) the file in `dir` and indexes its records. @throws {SyncError} `StateFailed` */
  static async open(fs: LogFileSystem, dir: string): Promise<ChangesetCopies> {
    const path = `${dir}/${fileName}`;
    try {
      const existed = await fs.exists(path);
      const file = await fs.open(path, { create: true });
      if (!existed) await fs.syncDir(dir);
      const copies = new ChangesetCopies(file, 0);
      await copies.#load(await file.size());
      return copies;
    } catch (error) {
      if (error instanceof SyncError) throw error;
      throw new SyncError(SyncErrorCode.StateFailed, `${path} cannot be read: ${error instanceof Error ? error.message : String(error)}`, {
        cause: error,
      });
    }
  }

  async #load(size: number): Promise<void> {
    let at = 0;
    let chunk: Uint8Array = new Uint8Array(0);
    let chunkAt = 0;
    while (at + 4 <= size) {
      if (at + 4 > chunkAt + chunk.length) {
        chunk = await this.#file.read(at, Math.min(chunkBytes, size - at));
        chunkAt = at;
      }
      const view = new DataView(chunk.buffer, chunk.byteOffset, chunk.byteLength);
      const length = view.getUint32(at - chunkAt, true);
      if (at + 4 + length > size || length < 10) break;
      if (at + 4 + length > chunkAt + chunk.length) {
        chunk = await this.#file.read(at, Math.max(Math.min(chunkBytes, size - at), 4 + length));
        chunkAt = at;
        continue;
      }
      const record = chunk.subarray(at - chunkAt + 4, at - chunkAt + 4 + length);
      const deviceLength = record[0] as number;
      if (1 + deviceLength + 8 > length) break;
      const device = decoder.decode(record.subarray(1, 1 + deviceLength));
      const seq = Number(new DataView(record.buffer, record.byteOffset + 1 + deviceLength, 8).getBigUint64(0, true));
      const envelopeAt = at + 4 + 1 + deviceLength + 8;
      this.#note(device, seq, envelopeAt, length - 1 - deviceLength - 8);
      at += 4 + length;
    }
    if (at < size) await this.#file.truncate(at);
    this.#size = at;
  }

  #note(device: string, seq: number, at: number, length: number): void {
    let seqs = this.#index.get(device);
    if (seqs === undefined) {
      seqs = new Map();
      this.#index.set(device, seqs);
    }
    if (!seqs.has(seq)) seqs.set(seq, { at, length });
  }

  /** Bytes the copies take on disk. */
  get bytes(): number {
    return this.#size;
  }

  has(device: string, seq: number): boolean {
    return this.#index.get(device)?.has(seq) === true;
  }

  /** Appends copies (once each); durable after {@link sync}. */
  async add(device: string, copies: ReadonlyArray<{ seq: number; bytes: Uint8Array }>): Promise<void> {
    const id = encoder.encode(device);
    const records: Uint8Array[] = [];
    let total = 0;
    const fresh = copies.filter((copy) => !this.has(device, copy.seq));
    for (const copy of fresh) {
      const record = new Uint8Array(4 + 1 + id.length + 8 + copy.bytes.length);
      const view = new DataView(record.buffer);
      view.setUint32(0, record.length - 4, true);
      record[4] = id.length;
      record.set(id, 5);
      view.setBigUint64(5 + id.length, BigInt(copy.seq), true);
      record.set(copy.bytes, 13 + id.length);
      records.push(record);
      total += record.length;
    }
    if (total === 0) return;
    const out = new Uint8Array(total);
    let offset = 0;
    for (const record of records) {
      out.set(record, offset);
      offset += record.length;
    }
    let written = 0;
    while (written < out.length) written += await this.#file.write(out.subarray(written), this.#size + written);
    offset = this.#size;
    for (const [index, copy] of fresh.entries()) {
      this.#note(device, copy.seq, offset + 13 + id.length, copy.bytes.length);
      offset += (records[index] as Uint8Array).length;
    }
    this.#size += total;
    this.#dirty = true;
  }

  /** Makes the copies added so far durable. */
  async sync(): Promise<void> {
    if (!this.#dirty) return;
    await this.#file.sync();
    this.#dirty = false;
  }

  async get(device: string, seq: number): Promise<Uint8Array | undefined> {
    const place = this.#index.get(device)?.get(seq);
    if (place === undefined) return undefined;
    return this.#file.read(place.at, place.length);
  }

  async close(): Promise<void> {
    await this.sync().catch(() => undefined);
    await this.#file.close();
  }
}
