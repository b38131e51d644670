// Property tests of the FoundationDB layout: record and log encodings, value
// chunking and reassembly, versionstamp handling, and the key ranges a prefix
// listing reads. Decoders meet random bytes and must answer with a typed error.
import { fc, test } from '@fast-check/vitest';
import { KvError, KvErrorCode, keyMatchesPrefix } from '@weft/kv';
import { describe, expect } from 'vitest';
import {
  BucketLayout,
  chunkBytes,
  commitVersionOf,
  decodeLogEntry,
  decodeRecord,
  encodeLogEntry,
  encodeRecordSuffix,
  fromHex,
  inlineLimit,
  joinChunks,
  splitChunks,
  toHex,
  versionAtCommit,
  versionOf,
} from '../src/layout.js';

const seed = Number(process.env.WEFT_SEED ?? Date.now() % 2 ** 31);
const runs = Number(process.env.WEFT_PROPERTY_RUNS ?? 200);
console.log(`fdb layout properties: ${runs} runs each, seed ${seed} (replay with WEFT_SEED=${seed})`);
const options = { seed, numRuns: runs };

const token = fc.stringMatching(/^[A-Za-z0-9_=/-]{1,6}$/);
const key = fc.array(token, { minLength: 1, maxLength: 4 }).map((tokens) => tokens.join('.'));
const stamp = fc.uint8Array({ minLength: 10, maxLength: 10 }).map((bytes) => Buffer.from(bytes));
const order = fc.integer({ min: 0, max: 0xffff });
/** Value lengths around the inline limit and chunk boundaries, filled with a pattern (fast to generate at 1 MiB). */
const valueLength = fc.oneof(
  fc.integer({ min: 0, max: 64 }),
  fc.integer({ min: inlineLimit - 2, max: inlineLimit + 2 }),
  fc.integer({ min: chunkBytes - 2, max: chunkBytes + 2 }),
  fc.integer({ min: 2 * chunkBytes - 2, max: 2 * chunkBytes + 2 }),
  fc.integer({ min: 0, max: 1024 * 1024 }),
);

function patterned(length: number, salt: number): Uint8Array {
  const value = new Uint8Array(length);
  for (let index = 0; index < length; index++) value[index] = (index * 31 + salt) & 0xff;
  return value;
}

/** What FoundationDB stores for a versionstamped value: the stamp, then the suffix. */
function stored(stampBytes: Buffer, suffix: Buffer): Buffer {
  return Buffer.concat([stampBytes, suffix]);
}

function expectCorrupt(action: () => unknown): void {
  try {
    action();
  } catch (error) {
    expect(error).toBeInstanceOf(KvError);
    expect((error as KvError).code).toBe(KvErrorCode.OperationFailed);
    return;
  }
}

describe('fdb layout: records and chunks', () => {
  test.prop([key, stamp, order, fc.constantFrom('put', 'delete', 'purge'), fc.nat({ max: 2 ** 48 }), valueLength, fc.nat(255)], options)(
    'a record decodes to what was written, and its chunks reassemble the value',
    (recordKey, stampBytes, recordOrder, op, expiresAt, length, salt) => {
      const value = op === 'put' ? patterned(length, salt) : undefined;
      const bytes = stored(stampBytes, encodeRecordSuffix(recordOrder, op, expiresAt, value));
      expect(bytes.length).toBeLessThanOrEqual(100_000);
      const record = decodeRecord(bytes, recordKey);
      expect(record.op).toBe(op);
      expect(record.expiresAt).toBe(expiresAt);
      expect(record.version).toEqual(versionOf(stampBytes, recordOrder));
      expect(record.length).toBe(value?.byteLength ?? 0);
      const chunks = value === undefined ? [] : splitChunks(value);
      expect(record.chunks).toBe(chunks.length);
      for (const chunk of chunks) expect(chunk.byteLength).toBeLessThanOrEqual(100_000);
      if (value !== undefined) {
        const layout = new BucketLayout('weft', 'b');
        const rows = chunks.map((chunk, index): [Buffer, Buffer] => [layout.chunk(recordKey, index), chunk]);
        const reassembled = record.chunks === 0 ? record.inline : joinChunks(record, rows, recordKey);
        expect(Buffer.from(reassembled).equals(Buffer.from(value))).toBe(true);
        if (rows.length > 1) {
          expectCorrupt(() => joinChunks(record, rows.slice(1), recordKey));
          expect(() => joinChunks(record, rows.slice(1), recordKey)).toThrow(/chunks/);
        }
      }
    },
  );

  test.prop([fc.uint8Array({ maxLength: 80 })], options)(
    'random bytes decode consistently or are refused with OperationFailed, never another error',
    (bytes) => {
      expectCorrupt(() => decodeRecord(Buffer.from(bytes), 'k'));
      expectCorrupt(() => decodeLogEntry(Buffer.from(bytes)));
    },
  );

  test.prop(
    [stamp, fc.constantFrom('put', 'delete', 'purge'), fc.integer({ min: 1, max: 2000 }), fc.integer({ min: 0, max: 40 })],
    options,
  )('a truncated or padded record is refused with OperationFailed', (stampBytes, op, length, cut) => {
    const bytes = stored(stampBytes, encodeRecordSuffix(0, op, 0, op === 'put' ? patterned(length, 1) : undefined));
    const damaged = cut % 2 === 0 ? bytes.subarray(0, Math.max(0, bytes.length - 1 - cut)) : Buffer.concat([bytes, Buffer.alloc(cut + 1)]);
    expect(() => decodeRecord(damaged, 'k')).toThrow(KvError);
  });

  test.prop([key, fc.constantFrom('put', 'delete', 'purge', 'expire')], options)(
    'a log entry decodes to its op and key',
    (entryKey, op) => {
      expect(decodeLogEntry(encodeLogEntry(op, entryKey))).toEqual({ op, key: entryKey });
    },
  );
});

describe('fdb layout: versionstamps', () => {
  test.prop([stamp, order, stamp, order], options)(
    'hex versions order like their bytes, round-trip, and carry the commit version',
    (stampA, orderA, stampB, orderB) => {
      const a = versionOf(stampA, orderA);
      const z = versionOf(stampB, orderB);
      const byBytes = Math.sign(Buffer.compare(a, z));
      const byText = toHex(a) < toHex(z) ? -1 : toHex(a) > toHex(z) ? 1 : 0;
      expect(byText).toBe(byBytes);
      expect(fromHex(toHex(a), 'version')).toEqual(a);
      expect(commitVersionOf(a)).toBe(stampA.readBigUInt64BE(0));
      // The smallest version at a commit version sorts before every version of that commit.
      expect(Buffer.compare(versionAtCommit(commitVersionOf(a)), a)).toBeLessThanOrEqual(0);
    },
  );

  test.prop([fc.string({ maxLength: 30 })], options)('anything but 24 lowercase hex digits is not a version', (text) => {
    if (/^[0-9a-f]{24}$/.test(text)) return;
    expect(() => fromHex(text, 'cursor')).toThrow(KvError);
  });
});

describe('fdb layout: keys', () => {
  test.prop([fc.array(key, { maxLength: 30 }), key], options)(
    'a prefix range holds every key the prefix matches, and filtering it leaves exactly those',
    (keys, prefix) => {
      const layout = new BucketLayout('weft', 'bucket');
      const [low, high] = layout.recordRange(prefix);
      const [allLow, allHigh] = layout.recordRange(undefined);
      for (const candidate of [...keys, prefix, `${prefix}.x`, `${prefix}-x`, `${prefix}x`]) {
        const recordKey = layout.record(candidate);
        expect(Buffer.compare(recordKey, allLow) >= 0 && Buffer.compare(recordKey, allHigh) < 0).toBe(true);
        expect(layout.recordKey(recordKey)).toBe(candidate);
        const inRange = Buffer.compare(recordKey, low) >= 0 && Buffer.compare(recordKey, high) < 0;
        if (keyMatchesPrefix(candidate, prefix)) expect(inRange).toBe(true);
      }
    },
  );

  test.prop([key, fc.integer({ min: 0, max: 90 }), key], options)(
    'chunk keys of one value sort in chunk order and stay out of other keys’ chunk ranges',
    (chunkKey, count, other) => {
      const layout = new BucketLayout('weft', 'bucket');
      const [low, high] = layout.chunkRange(chunkKey);
      const [otherLow, otherHigh] = layout.chunkRange(other);
      let previous: Buffer | undefined;
      for (let index = 0; index <= count; index++) {
        const chunk = layout.chunk(chunkKey, index);
        expect(Buffer.compare(chunk, low) >= 0 && Buffer.compare(chunk, high) < 0).toBe(true);
        if (other !== chunkKey) expect(Buffer.compare(chunk, otherLow) >= 0 && Buffer.compare(chunk, otherHigh) < 0).toBe(false);
        if (previous !== undefined) expect(Buffer.compare(previous, chunk)).toBeLessThan(0);
        previous = chunk;
      }
    },
  );

  test.prop([fc.nat({ max: 2 ** 47 }), key], options)('an expiry index key names its key and time', (expiresAt, expiryKey) => {
    const layout = new BucketLayout('weft', 'bucket');
    const indexKey = layout.expiry(expiresAt, expiryKey);
    expect(layout.parseExpiry(indexKey)).toEqual({ expiresAt, key: expiryKey });
    const [low, high] = layout.expiredRange(expiresAt);
    expect(Buffer.compare(indexKey, low) >= 0 && Buffer.compare(indexKey, high) < 0).toBe(true);
    const [, before] = layout.expiredRange(expiresAt - 1);
    expect(Buffer.compare(indexKey, before)).toBeGreaterThanOrEqual(0);
  });
});
