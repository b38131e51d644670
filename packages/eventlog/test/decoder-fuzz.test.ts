/**
 * Decoders treat bytes as hostile: random mutations of valid frames and
 * segment headers give a typed error (or, for a mutation that changed
 * nothing, the original), never an exception of another kind or a wrong
 * event. The properties live in decoder-properties.ts; headless Chromium
 * runs them too (test/browser-eventlog.test.ts).
 */
import { type fc, test } from '@fast-check/vitest';
import { loadHashers } from '@weft/eventlog';
import { createCRC32 } from 'hash-wasm';
import { describe, expect } from 'vitest';
import { crcProperties, frameProperties } from './decoder-properties.js';

const { crc32c } = await loadHashers();
const wasmCrc = await createCRC32(0x82f63b78);
/** The WASM hasher alone, as the reference for the JavaScript path. */
function crc32cWasm(data: Uint8Array): number {
  wasmCrc.init();
  wasmCrc.update(data);
  return Number.parseInt(wasmCrc.digest('hex'), 16);
}

const seed = Number(process.env.WEFT_SEED ?? Date.now() % 2 ** 31);
const runs = Number(process.env.WEFT_PROPERTY_RUNS ?? 500);
console.log(`decoder fuzzing: ${runs} runs per property, seed ${seed} (replay with WEFT_SEED=${seed})`);

describe('frame and header decoders under byte mutations', () => {
  for (const property of frameProperties(crc32c)) {
    test.prop(property.arbitraries as [fc.Arbitrary<unknown>], { numRuns: runs, seed })(property.name, (...values) =>
      property.check(...values),
    );
  }
});

describe('CRC-32C: the JavaScript path for short frames and the WASM path for long ones', () => {
  test('the check value of the standard: "123456789" gives 0xe3069283 on both paths', () => {
    const check = new TextEncoder().encode('123456789');
    expect(crc32c(check)).toBe(0xe3069283);
    expect(crc32c(new Uint8Array(2048).fill(0x31).subarray(0, 2000))).toBe(crc32cWasm(new Uint8Array(2000).fill(0x31)));
  });

  for (const property of crcProperties(crc32c, crc32cWasm)) {
    test.prop(property.arbitraries as [fc.Arbitrary<unknown>], { numRuns: runs, seed })(property.name, (...values) =>
      property.check(...values),
    );
  }
});
