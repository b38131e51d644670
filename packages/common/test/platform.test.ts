/**
 * The browser's side of `#platform` (src/platform/browser.ts) against Node's
 * (src/platform/node.ts): the same text for the same bytes, the same bytes
 * for any text (hostile text included), and tracing channels that publish
 * the same events in the same order. A browser bundle runs the browser side;
 * these tests run it here, beside the side Node.js users run.
 */
import { tracingChannel as nodeChannel } from 'node:diagnostics_channel';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { randomBytes, utf8Length } from '../src/bytes.js';
import * as browser from '../src/platform/browser.js';
import * as node from '../src/platform/node.js';

const seed = Number(process.env.WEFT_SEED ?? Date.now() % 2 ** 31);
const runs = process.env.WEFT_LONG === '1' ? 20_000 : 2_000;
const options = { numRuns: runs, seed, endOnFailure: true };

describe('bytes as text, browser and Node.js sides', () => {
  it('encode any bytes to the same hex and base64, and decode them back', () => {
    console.log(`bytes as text: ${runs} runs, seed ${seed} (replay with WEFT_SEED=${seed})`);
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (bytes) => {
        expect(browser.toHex(bytes)).toBe(node.toHex(bytes));
        expect(browser.toBase64(bytes)).toBe(node.toBase64(bytes));
        expect(browser.fromHex(node.toHex(bytes))).toEqual(bytes);
        expect(browser.fromBase64(node.toBase64(bytes))).toEqual(bytes);
        expect(browser.fromBase64(node.toBase64(bytes).replaceAll('+', '-').replaceAll('/', '_').replaceAll('=', ''))).toEqual(bytes);
      }),
      options,
    );
  });

  it('decode any text as Node.js does (hostile text gives the same bytes, never an error)', () => {
    const text = fc.oneof(
      fc.string({ unit: fc.constantFrom(...'0123456789abcdefABCDEF+/-_= \n%zZ\u00e9'), maxLength: 80 }),
      fc.string({ maxLength: 40 }),
    );
    fc.assert(
      fc.property(text, (value) => {
        expect(browser.fromHex(value)).toEqual(node.fromHex(value));
        expect(browser.fromBase64(value)).toEqual(node.fromBase64(value));
      }),
      options,
    );
  });

  it('compare bytes alike, views into larger buffers included', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 40 }), fc.uint8Array({ maxLength: 40 }), fc.nat(3), (a, b, shift) => {
        const padded = new Uint8Array(a.length + shift);
        padded.set(a, shift);
        const view = padded.subarray(shift);
        expect(browser.bytesEqual(view, b)).toBe(node.bytesEqual(view, b));
        expect(browser.bytesEqual(view, a)).toBe(true);
        expect(node.bytesEqual(view, a)).toBe(true);
      }),
      options,
    );
  });

  it('count UTF-8 bytes as TextEncoder writes them', () => {
    const encoder = new TextEncoder();
    fc.assert(
      fc.property(
        fc.string({ unit: 'binary', maxLength: 40 }),
        fc.string({ unit: fc.constantFrom('\ud800', '\udc00', 'a', '\u00e9'), maxLength: 10 }),
        (text, lone) => {
          const value = text + lone;
          expect(utf8Length(value)).toBe(encoder.encode(value).length);
        },
      ),
      options,
    );
  });

  it('random bytes are fresh, also past the 64 KiB a getRandomValues call takes', () => {
    const big = randomBytes(200_000);
    expect(big.length).toBe(200_000);
    // The last piece is filled too: 16 zero bytes at the end would be a piece left unfilled.
    expect(big.subarray(-16).some((byte) => byte !== 0)).toBe(true);
    expect(node.toHex(randomBytes(16))).not.toBe(node.toHex(randomBytes(16)));
  });
});

describe('tracing channels, browser and Node.js sides', () => {
  async function events(make: (name: string) => ReturnType<typeof nodeChannel>, outcome: 'resolve' | 'reject' | 'throw') {
    const seen: string[] = [];
    const channel = make(`weft:test:${outcome}:${Math.random()}`);
    expect(channel.hasSubscribers).toBe(false);
    const handlers = {
      start: (message: unknown) => seen.push(`start ${JSON.stringify(message)}`),
      end: () => seen.push('end'),
      asyncStart: (message: unknown) => seen.push(`asyncStart ${String((message as { result?: unknown }).result)}`),
      asyncEnd: () => seen.push('asyncEnd'),
      error: (message: unknown) => seen.push(`error ${(message as { error: Error }).error.message}`),
    };
    channel.subscribe(handlers);
    expect(channel.hasSubscribers).toBe(true);
    const run = async () => {
      if (outcome === 'reject') throw new Error('refused');
      return 42;
    };
    const failing = () => {
      throw new Error('thrown');
    };
    try {
      seen.push(`result ${await channel.tracePromise(outcome === 'throw' ? failing : run, { op: 'get' })}`);
    } catch (error) {
      seen.push(`caught ${(error as Error).message}`);
    }
    channel.unsubscribe(handlers);
    expect(channel.hasSubscribers).toBe(false);
    return seen;
  }

  for (const outcome of ['resolve', 'reject', 'throw'] as const) {
    it(`publish the same events in the same order when the operation ${outcome}s`, async () => {
      const browserEvents = await events((name) => browser.tracingChannel(name) as ReturnType<typeof nodeChannel>, outcome);
      expect(browserEvents).toEqual(await events(nodeChannel, outcome));
    });
  }

  it('hand the same channel to every caller of one name', () => {
    expect(browser.tracingChannel('weft:kv:get')).toBe(browser.tracingChannel('weft:kv:get'));
  });
});
