/**
 * The id index (event id -> position, ids kept as bytes): against a `Map`
 * as the model, with ids that share every byte but one, removals of rolled
 * back positions, and ids the log never held.
 */
import { fc, test } from '@fast-check/vitest';
import { MemoryFileSystem, openEventLog } from '@weft/eventlog';
import { describe, expect } from 'vitest';
import { IdIndex } from '../src/id-index.js';
import { formatUuid, UuidV7Generator } from '../src/ids.js';

const seed = Number(process.env.WEFT_SEED ?? Date.now() % 2 ** 31);
const runs = Number(process.env.WEFT_PROPERTY_RUNS ?? 100);
console.log(`id index: ${runs} runs, seed ${seed} (replay with WEFT_SEED=${seed})`);

/** Ids that differ only in their last two bytes: as alike as ids get. */
const alikeId = fc.integer({ min: 0, max: 0xffff }).map((tail) => {
  const bytes = new Uint8Array(16).fill(0x5a);
  bytes[14] = tail >> 8;
  bytes[15] = tail & 0xff;
  return formatUuid(bytes);
});
const anyId = fc.uint8Array({ minLength: 16, maxLength: 16 }).map((bytes) => formatUuid(bytes));

describe('id index', () => {
  test.prop(
    [
      fc.array(fc.oneof(alikeId, anyId), { minLength: 1, maxLength: 3000 }),
      fc.nat({ max: 50 }),
      fc.array(fc.oneof(alikeId, anyId), { maxLength: 50 }),
    ],
    { numRuns: runs, seed },
  )('finds every id at its position, forgets rolled-back ones, and finds no id it was not given', (ids, rolledBack, probes) => {
    const unique = [...new Set(ids)];
    const index = new IdIndex();
    const model = new Map<string, number>();
    unique.forEach((id, at) => {
      index.add(at + 1, id);
      model.set(id, at + 1);
    });
    // Roll back the newest positions, newest first, as a failed write does; then reuse them.
    const keep = Math.max(0, unique.length - rolledBack);
    for (let position = unique.length; position > keep; position--) {
      index.remove(position);
      model.delete(unique[position - 1] as string);
    }
    const reused = [...new Set(probes)].filter((id) => !model.has(id)).slice(0, unique.length - keep);
    reused.forEach((id, at) => {
      index.add(keep + at + 1, id);
      model.set(id, keep + at + 1);
    });
    for (const id of [...unique, ...probes]) expect(index.get(id)).toBe(model.get(id));
    expect(index.get('not-a-uuid')).toBeUndefined();
  });
});

describe('tagged ids', () => {
  test.prop(
    [fc.uint8Array({ minLength: 6, maxLength: 6 }), fc.array(fc.integer({ min: 0, max: 5 }), { minLength: 1, maxLength: 20_000 })],
    {
      numRuns: Math.min(runs, 20),
      seed,
    },
  )('end in the tag, stay version-7 UUIDs, and stay unique and ordered however many share a millisecond', (tag, steps) => {
    const ids = new UuidV7Generator();
    ids.tag = tag;
    const tail = Buffer.from(tag).toString('hex');
    let now = 1_700_000_000_000;
    let previous = '';
    const seen = new Set<string>();
    for (const step of steps) {
      now += step === 0 ? 1 : 0;
      const id = ids.next(now);
      expect(id.endsWith(tail)).toBe(true);
      expect(id[14]).toBe('7');
      expect(id > previous).toBe(true);
      expect(seen.has(id)).toBe(false);
      seen.add(id);
      previous = id;
    }
  });

  test('a log tags the ids it generates once told to, and refuses a tag that is not 6 bytes', async () => {
    const log = await openEventLog({ dir: '/log', fs: new MemoryFileSystem() });
    const before = await log.append({ entity: 'e', kind: 0x1001, payload: new Uint8Array([1]) });
    log.tagIds(new Uint8Array([1, 2, 3, 4, 5, 6]));
    const after = await log.append({ entity: 'e', kind: 0x1001, payload: new Uint8Array([2]) });
    expect(after.events[0]?.id.endsWith('010203040506')).toBe(true);
    expect(before.events[0]?.id.endsWith('010203040506')).toBe(false);
    expect(() => log.tagIds(new Uint8Array(5))).toThrow(/6 bytes/);
    await log.close();
  });
});
