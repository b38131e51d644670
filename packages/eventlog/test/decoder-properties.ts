/**
 * The decoder properties of the event log, shared by decoder-fuzz.test.ts
 * (Node.js, under vitest) and the browser checks (test/browser/checks.ts, in
 * headless Chromium): random mutations of valid frames and segment headers
 * give a typed error (or, for a mutation that changed nothing, the
 * original), never an exception of another kind or a wrong event; and the
 * CRC-32C paths agree. Each property throws a plain Error when it fails.
 */
import { bytesEqual } from '@weft/common';
import {
  checkFrames,
  decodeFrameBody,
  decodeSegmentHeader,
  type EventId,
  EventLogError,
  encodeFrame,
  encodeSegmentHeader,
  type FrameHeader,
  readFrame,
} from '@weft/eventlog';
import fc from 'fast-check';

type Crc = (data: Uint8Array, start?: number, end?: number) => number;

function assert(condition: boolean, message: string): void {
  if (!condition) throw new Error(message);
}

export const uuid = fc.uuid({ version: 7 }).map((id) => id.toLowerCase() as EventId);
// biome-ignore lint/suspicious/noControlCharactersInRegex: names with control characters are what the log refuses
const controlCharacter = /[\u0000-\u001f\u007f]/;
export const name = fc
  .string({ minLength: 1, maxLength: 40 })
  .filter((text) => !controlCharacter.test(text) && (text as unknown as { isWellFormed(): boolean }).isWellFormed());

export const frameArbitrary = fc
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

export type Mutation =
  | { kind: 'flip'; at: number; bit: number }
  | { kind: 'set'; at: number; value: number }
  | { kind: 'cut'; at: number }
  | { kind: 'insert'; at: number; value: number };
export const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), bit: fc.integer({ min: 0, max: 7 }) }),
  fc.record({ kind: fc.constant('set' as const), at: fc.nat(), value: fc.integer({ min: 0, max: 255 }) }),
  fc.record({ kind: fc.constant('cut' as const), at: fc.nat() }),
  fc.record({ kind: fc.constant('insert' as const), at: fc.nat(), value: fc.integer({ min: 0, max: 255 }) }),
);

export function mutate(bytes: Uint8Array, mutations: readonly Mutation[]): Uint8Array {
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

/** A decoder property: its name, its arbitraries and the check of one case. */
export interface DecoderProperty {
  readonly name: string;
  readonly arbitraries: fc.Arbitrary<unknown>[];
  readonly check: (...values: unknown[]) => void;
}

function property<Values extends unknown[]>(
  name: string,
  arbitraries: { [Index in keyof Values]: fc.Arbitrary<Values[Index]> },
  check: (...values: Values) => void,
): DecoderProperty {
  return { name, arbitraries: arbitraries as fc.Arbitrary<unknown>[], check: check as unknown as (...values: unknown[]) => void };
}

type Fields = typeof frameArbitrary extends fc.Arbitrary<infer Value> ? Value : never;

/** The frame and header decoder properties, with the log's CRC-32C. */
export function frameProperties(crc32c: Crc): DecoderProperty[] {
  return [
    property(
      'readFrame returns the original frame, or reports truncated/damaged; never throws, never a different event',
      [frameArbitrary, fc.array(mutation, { minLength: 1, maxLength: 4 })],
      (fields: Fields, mutations: Mutation[]) => {
        const { payload, ...header } = fields;
        const frame = encodeFrame(header as FrameHeader, payload, crc32c);
        const mutated = mutate(frame, mutations);
        const result = readFrame(mutated, 0, crc32c);
        if ('problem' in result) {
          assert(['truncated', 'damaged'].includes(result.problem), `unexpected problem ${result.problem}`);
          return;
        }
        // Whatever decodes must be the frame that was written (a mutation may have been undone by another).
        assert(bytesEqual(mutated.subarray(0, result.size), frame), 'a mutated frame decoded as another frame');
        assert(result.header.id === header.id, 'a mutated frame decoded with another id');
        assert(bytesEqual(result.payload, payload), 'a mutated frame decoded with another payload');
      },
    ),
    property(
      'decodeFrameBody without the CRC only ever throws InvalidFrame',
      [frameArbitrary, fc.array(mutation, { minLength: 1, maxLength: 4 })],
      (fields: Fields, mutations: Mutation[]) => {
        const { payload, ...header } = fields;
        const body = encodeFrame(header as FrameHeader, payload, crc32c).subarray(8);
        try {
          decodeFrameBody(mutate(body, mutations));
        } catch (error) {
          assert(EventLogError.is(error, 'InvalidFrame'), `decodeFrameBody threw ${String(error)}`);
        }
      },
    ),
    property(
      'decodeSegmentHeader only ever throws InvalidFrame',
      [fc.integer({ min: 1, max: 2 ** 40 }), fc.array(mutation, { minLength: 1, maxLength: 3 })],
      (firstPosition: number, mutations: Mutation[]) => {
        const mutated = mutate(encodeSegmentHeader(firstPosition, 32), mutations);
        try {
          const decoded = decodeSegmentHeader(mutated);
          assert(decoded.firstPosition >= 0, 'a negative first position');
        } catch (error) {
          assert(EventLogError.is(error, 'InvalidFrame'), `decodeSegmentHeader threw ${String(error)}`);
        }
      },
    ),
    property(
      'frames read in place from one buffer (as a scan reads them: CRCs checked in one call, views, one DataView) decode exactly as each alone, or as damaged',
      [fc.array(frameArbitrary, { minLength: 1, maxLength: 4 }), fc.nat({ max: 40 }), fc.array(mutation, { maxLength: 2 })],
      (frames: Fields[], lead: number, mutations: Mutation[]) => {
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
        assert(checkFrames(buffer, view, lead, crc32c) === accepted, 'checkFrames stopped elsewhere than readFrame');
        at = lead;
        for (const [index, frame] of encoded.entries()) {
          const inPlace = readFrame(buffer, at, crc32c, { payloadAs: 'view', headerBytesAs: 'view', view });
          const alone = readFrame(buffer.slice(at, at + frame.length), 0, crc32c);
          if ('problem' in inPlace || 'problem' in alone) {
            // Damaged or cut in place exactly when damaged or cut alone (a frame cut off by the buffer's end is truncated either way).
            assert('problem' in inPlace && 'problem' in alone, 'a frame refused in place but not alone, or the reverse');
            return;
          }
          assert(inPlace.size === frame.length, 'a frame read in place has another size');
          assert(
            JSON.stringify(inPlace.header, (_key, value) =>
              typeof value === 'bigint' ? `${value}n` : value instanceof Uint8Array ? [...value] : value,
            ) ===
              JSON.stringify(alone.header, (_key, value) =>
                typeof value === 'bigint' ? `${value}n` : value instanceof Uint8Array ? [...value] : value,
              ),
            'a frame read in place has another header',
          );
          assert(bytesEqual(inPlace.payload, frames[index]?.payload ?? new Uint8Array()), 'a frame read in place has another payload');
          at += frame.length;
        }
      },
    ),
    property('random bytes never decode as a frame', [fc.uint8Array({ maxLength: 400 })], (bytes: Uint8Array) => {
      assert('problem' in readFrame(bytes, 0, crc32c), 'random bytes decoded as a frame');
    }),
  ];
}

/** The CRC-32C properties: the log's JavaScript and WASM paths against the WASM hasher alone. */
export function crcProperties(crc32c: Crc, crc32cWasm: (data: Uint8Array) => number): DecoderProperty[] {
  return [
    property(
      'a range read in place gives the CRC of that range copied out, on both paths',
      [fc.uint8Array({ minLength: 0, maxLength: 4200 }), fc.nat({ max: 64 }), fc.nat({ max: 64 })],
      (bytes: Uint8Array, before: number, after: number) => {
        const padded = new Uint8Array(before + bytes.length + after).fill(0xa5);
        padded.set(bytes, before);
        assert(crc32c(padded, before, before + bytes.length) === crc32cWasm(bytes), 'the CRC of a range differs');
      },
    ),
    property(
      'every length and alignment gives the same CRC as the WASM hasher',
      [fc.uint8Array({ minLength: 0, maxLength: 2200 }), fc.nat({ max: 15 })],
      (bytes: Uint8Array, shift: number) => {
        const shifted = new Uint8Array(bytes.length + shift);
        shifted.set(bytes, shift);
        assert(crc32c(shifted.subarray(shift)) === crc32cWasm(bytes), 'the CRC of a shifted view differs');
      },
    ),
  ];
}
