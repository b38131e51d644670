/**
 * Decoders treat bytes as hostile: random mutations of valid frames and
 * segment headers give a typed error (or, for a mutation that changed
 * nothing, the original), never an exception of another kind or a wrong event.
 */
import { fc, test } from '@fast-check/vitest';
import {
  checkFrames,
  decodeFrameBody,
  decodeSegmentHeader,
  type EventId,
  EventLogError,
  encodeFrame,
  encodeSegmentHeader,
  type FrameHeader,
  loadHashers,
  readFrame,
} from '@weft/eventlog';
import { createCRC32 } from 'hash-wasm';
import { describe, expect } from 'vitest';

const { crc32c } = await loadHashers();
const wasmCrc = await createCRC32(0x82f63b78);
/** The WASM hasher alone, as the reference for the JavaScript path. */
function crc32cWasm(data: Uint8Array): number {
  wasmCrc.init();
  wasmCrc.update(data);
  return Number.parseInt(wasmCrc.digest('hex'), 16);
}

const uuid = fc.uuid({ version: 7 }).map((id) => id.toLowerCase() as EventId);
// biome-ignore lint/suspicious/noControlCharactersInRegex: names with control characters are what the log refuses
const controlCharacter = /[\u0000-\u001f\u007f]/;
const name = fc
  .string({ minLength: 1, maxLength: 40 })
  .filter((text) => !controlCharacter.test(text) && (text as unknown as { isWellFormed(): boolean }).isWellFormed());

const frameArbitrary = fc
  .record({
    kind: fc.integer({ min: 0x1000, max: 0xcfff }),
    id: uuid,
    time: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
    position: fc.integer({ min: 1, max: 2 ** 40 }),
    sequence: fc.integer({ min: 1, max: 2 ** 40 }),
    batchCount: fc.integer({ min: 1, max: 10 }),
    hash: fc.uint8Array({ minLength: 32, maxLength: 32 }),
    entity: name,
    scope: name,
    causationId: fc.option(uuid, { nil: undefined }),
    correlationId: fc.option(uuid, { nil: undefined }),
    parents: fc.array(uuid, { maxLength: 4 }),
    idempotencyKey: fc.option(name, { nil: undefined }),
    encryption: fc.option(fc.record({ keyId: fc.nat(), nonce: fc.uint8Array({ minLength: 24, maxLength: 24 }) }), { nil: undefined }),
    payload: fc.uint8Array({ maxLength: 300 }),
  })
  .chain((fields) =>
    fc.record({ batchIndex: fc.integer({ min: 0, max: fields.batchCount - 1 }) }).map(({ batchIndex }) => ({ ...fields, batchIndex })),
  );

type Mutation =
  | { kind: 'flip'; at: number; bit: number }
  | { kind: 'set'; at: number; value: number }
  | { kind: 'cut'; at: number }
  | { kind: 'insert'; at: number; value: number };
const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), bit: fc.integer({ min: 0, max: 7 }) }),
  fc.record({ kind: fc.constant('set' as const), at: fc.nat(), value: fc.integer({ min: 0, max: 255 }) }),
  fc.record({ kind: fc.constant('cut' as const), at: fc.nat() }),
  fc.record({ kind: fc.constant('insert' as const), at: fc.nat(), value: fc.integer({ min: 0, max: 255 }) }),
);

function mutate(bytes: Uint8Array, mutations: readonly Mutation[]): Uint8Array {
  let result = bytes.slice();
  for (const change of mutations) {
    if (result.length === 0) break;
    const at = change.at % result.length;
    if (change.kind === 'flip') result[at] = (result[at] as number) ^ (1 << change.bit);
    else if (change.kind === 'set') result[at] = change.value;
    else if (change.kind === 'cut') result = result.slice(0, at);
    else result = new Uint8Array([...result.subarray(0, at), change.value, ...result.subarray(at)]);
  }
  return result;
}

const seed = Number(process.env.WEFT_SEED ?? Date.now() % 2 ** 31);
const runs = Number(process.env.WEFT_PROPERTY_RUNS ?? 500);
console.log(`decoder fuzzing: ${runs} runs per property, seed ${seed} (replay with WEFT_SEED=${seed})`);

describe('frame and header decoders under byte mutations', () => {
  test.prop([frameArbitrary, fc.array(mutation, { minLength: 1, maxLength: 4 })], { numRuns: runs, seed })(
    'readFrame returns the original frame, or reports truncated/damaged; never throws, never a different event',
    (fields, mutations) => {
      const { payload, ...header } = fields;
      const frame = encodeFrame(header as FrameHeader, payload, crc32c);
      const mutated = mutate(frame, mutations);
      const result = readFrame(mutated, 0, crc32c);
      if ('problem' in result) {
        expect(['truncated', 'damaged']).toContain(result.problem);
        return;
      }
      // Whatever decodes must be the frame that was written (a mutation may have been undone by another).
      expect(Buffer.from(mutated.subarray(0, result.size)).equals(Buffer.from(frame))).toBe(true);
      expect(result.header.id).toBe(header.id);
      expect(Buffer.from(result.payload).equals(Buffer.from(payload))).toBe(true);
    },
  );

  test.prop([frameArbitrary, fc.array(mutation, { minLength: 1, maxLength: 4 })], { numRuns: runs, seed })(
    'decodeFrameBody without the CRC only ever throws InvalidFrame',
    (fields, mutations) => {
      const { payload, ...header } = fields;
      const body = encodeFrame(header as FrameHeader, payload, crc32c).subarray(8);
      try {
        decodeFrameBody(mutate(body, mutations));
      } catch (error) {
        expect(EventLogError.is(error, 'InvalidFrame'), String(error)).toBe(true);
      }
    },
  );

  test.prop([fc.integer({ min: 1, max: 2 ** 40 }), fc.array(mutation, { minLength: 1, maxLength: 3 })], { numRuns: runs, seed })(
    'decodeSegmentHeader only ever throws InvalidFrame',
    (firstPosition, mutations) => {
      const mutated = mutate(encodeSegmentHeader(firstPosition, 32), mutations);
      try {
        const decoded = decodeSegmentHeader(mutated);
        expect(decoded.firstPosition).toBeGreaterThanOrEqual(0);
      } catch (error) {
        expect(EventLogError.is(error, 'InvalidFrame'), String(error)).toBe(true);
      }
    },
  );

  test.prop([fc.array(frameArbitrary, { minLength: 1, maxLength: 4 }), fc.nat({ max: 40 }), fc.array(mutation, { maxLength: 2 })], {
    numRuns: runs,
    seed,
  })(
    'frames read in place from one buffer (as a scan reads them: CRCs checked in one call, views, one DataView) decode exactly as each alone, or as damaged',
    (frames, lead, mutations) => {
      const encoded = frames.map(({ payload, ...header }) => encodeFrame(header as FrameHeader, payload, crc32c));
      const joined = new Uint8Array(lead + encoded.reduce((sum, frame) => sum + frame.length, 0));
      let at = lead;
      for (const frame of encoded) {
        joined.set(frame, at);
        at += frame.length;
      }
      const buffer = mutate(joined, mutations);
      const view = new DataView(buffer.buffer, buffer.byteOffset, buffer.byteLength);
      // The one-call check of a chunk stops exactly where readFrame, frame by frame, first refuses (or at the end).
      let accepted = lead;
      for (;;) {
        const next = readFrame(buffer, accepted, crc32c);
        if ('problem' in next) break;
        accepted += next.size;
      }
      expect(checkFrames(buffer, view, lead, crc32c)).toBe(accepted);
      at = lead;
      for (const [index, frame] of encoded.entries()) {
        const inPlace = readFrame(buffer, at, crc32c, { payloadAs: 'view', headerBytesAs: 'view', view });
        const alone = readFrame(buffer.slice(at, at + frame.length), 0, crc32c);
        if ('problem' in inPlace || 'problem' in alone) {
          // Damaged or cut in place exactly when damaged or cut alone (a frame cut off by the buffer's end is truncated either way).
          expect('problem' in inPlace && 'problem' in alone).toBe(true);
          return;
        }
        expect(inPlace.size).toBe(frame.length);
        expect(inPlace.header).toEqual(alone.header);
        expect(Buffer.from(inPlace.payload).equals(Buffer.from(frames[index]?.payload ?? []))).toBe(true);
        at += frame.length;
      }
    },
  );

  test.prop([fc.uint8Array({ maxLength: 400 })], { numRuns: runs, seed })('random bytes never decode as a frame', (bytes) => {
    const result = readFrame(bytes, 0, crc32c);
    expect('problem' in result).toBe(true);
  });
});

describe('CRC-32C: the JavaScript path for short frames and the WASM path for long ones', () => {
  test('the check value of the standard: "123456789" gives 0xe3069283 on both paths', () => {
    const check = new TextEncoder().encode('123456789');
    expect(crc32c(check)).toBe(0xe3069283);
    expect(crc32c(new Uint8Array(2048).fill(0x31).subarray(0, 2000))).toBe(crc32cWasm(new Uint8Array(2000).fill(0x31)));
  });

  test.prop([fc.uint8Array({ minLength: 0, maxLength: 4200 }), fc.nat({ max: 64 }), fc.nat({ max: 64 })], { numRuns: runs, seed })(
    'a range read in place gives the CRC of that range copied out, on both paths',
    (bytes, before, after) => {
      const padded = new Uint8Array(before + bytes.length + after).fill(0xa5);
      padded.set(bytes, before);
      expect(crc32c(padded, before, before + bytes.length)).toBe(crc32cWasm(bytes));
    },
  );

  test.prop([fc.uint8Array({ minLength: 0, maxLength: 2200 }), fc.nat({ max: 15 })], { numRuns: runs, seed })(
    'every length and alignment gives the same CRC as the WASM hasher',
    (bytes, shift) => {
      const shifted = new Uint8Array(bytes.length + shift);
      shifted.set(bytes, shift);
      const view = shifted.subarray(shift);
      expect(crc32c(view)).toBe(crc32cWasm(bytes));
    },
  );
});
