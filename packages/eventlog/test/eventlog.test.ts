import { mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  type EventId,
  type EventLog,
  EventLogError,
  type LogFile,
  MemoryFileSystem,
  type OpenOptions,
  openEventLog,
  SimulatedFileSystem,
  type SubscriptionItem,
  type SyncMode,
} from '@weft/eventlog';
import { afterEach, describe, expect, it } from 'vitest';

const bytes = (text: string) => new TextEncoder().encode(text);
const text = (value: Uint8Array) => new TextDecoder().decode(value);
const kind = 0x1001;

let open: EventLog[] = [];
async function fresh(options: Partial<Parameters<typeof openEventLog>[0]> = {}): Promise<EventLog> {
  const log = await openEventLog({ dir: '/log', fs: new MemoryFileSystem(), ...options });
  open.push(log);
  return log;
}

afterEach(async () => {
  for (const log of open) await log.close().catch(() => undefined);
  open = [];
});

describe('appends and reads', () => {
  it('assigns positions, per-entity sequences, UUIDv7 ids and increasing HLC times', async () => {
    const log = await fresh();
    const first = await log.append({ entity: 'a', kind, payload: bytes('1') });
    const second = await log.append({ entity: 'b', kind, payload: bytes('2') });
    const third = await log.append({ entity: 'a', kind, payload: bytes('3') });
    expect([first.position, second.position, third.position]).toEqual([1, 2, 3]);
    expect(third.events[0]?.sequence).toBe(2);
    const events = [];
    for await (const event of log.read()) events.push(event);
    expect(events.map((event) => text(event.payload))).toEqual(['1', '2', '3']);
    expect(events.every((event) => /^[0-9a-f]{8}-[0-9a-f]{4}-7/.test(event.id))).toBe(true);
    expect(events[0]?.time ?? 0n).toBeLessThan(events[1]?.time ?? 0n);
    expect(events[1]?.time ?? 0n).toBeLessThan(events[2]?.time ?? 0n);
    expect((await log.get(second.events[0]?.id as string))?.entity).toBe('b');
    expect(await log.get('00000000-0000-7000-8000-000000000000')).toBeUndefined();
  });

  it('reads an entity from a sequence and the log from a position', async () => {
    const log = await fresh();
    for (let index = 1; index <= 10; index++) await log.append({ entity: index % 2 ? 'odd' : 'even', kind, payload: bytes(String(index)) });
    const odd = [];
    for await (const event of log.readEntity('odd', 3)) odd.push(text(event.payload));
    expect(odd).toEqual(['5', '7', '9']);
    const tail = [];
    for await (const event of log.read(8)) tail.push(event.position);
    expect(tail).toEqual([8, 9, 10]);
  });

  it('a read stream answers next() calls in order even when they overlap, and stops when a loop breaks', async () => {
    const log = await fresh();
    await log.appendBatch(
      Array.from({ length: 200 }, (_, index) => ({ entity: `e${index % 5}`, kind, payload: bytes(String(index + 1)) })),
    );
    // All calls made at once, across the arrays the reader decodes (64 a step): answered in order, then done.
    const stream = log.read();
    const results = await Promise.all(Array.from({ length: 203 }, () => stream.next()));
    expect(results.slice(0, 200).map((result) => result.value?.position)).toEqual(Array.from({ length: 200 }, (_, index) => index + 1));
    expect(results.slice(200).every((result) => result.done === true)).toBe(true);
    const entity = log.readEntity('e1');
    const [first, second] = await Promise.all([entity.next(), entity.next()]);
    expect([first.value?.sequence, second.value?.sequence]).toEqual([1, 2]);
    // Breaking out ends the stream; the log reads and closes normally after.
    let count = 0;
    for await (const _event of log.read(150)) if (++count === 3) break;
    expect(count).toBe(3);
    const broken = log.read();
    await broken.next();
    expect(await broken.return?.()).toEqual({ value: undefined, done: true });
    expect(await broken.next()).toEqual({ value: undefined, done: true });
    const again = [];
    for await (const event of log.read(199)) again.push(event.position);
    expect(again).toEqual([199, 200]);
  });

  it('a read that takes a few events from a position reads a little of the segment, not a whole 4 MiB chunk', async () => {
    let bytesRead = 0;
    class CountedReads extends MemoryFileSystem {
      override async open(path: string, options?: OpenOptions): Promise<LogFile> {
        const file = await super.open(path, options);
        return {
          size: () => file.size(),
          read: async (position, length) => {
            const bytes = await file.read(position, length);
            bytesRead += bytes.length;
            return bytes;
          },
          write: (data, position) => file.write(data, position),
          sync: () => file.sync(),
          truncate: (size) => file.truncate(size),
          close: () => file.close(),
        };
      }
    }
    const log = await fresh({ fs: new CountedReads() });
    const payload = new Uint8Array(256);
    for (let index = 0; index < 20_000; index += 1000) {
      await log.appendBatch(Array.from({ length: 1000 }, () => ({ entity: 'e', kind, payload })));
    }
    await log.flush();
    bytesRead = 0;
    const positions: number[] = [];
    for await (const event of log.read(10_000)) {
      positions.push(event.position);
      if (positions.length === 10) break;
    }
    expect(positions).toEqual(Array.from({ length: 10 }, (_, index) => 10_000 + index));
    // The first read of a scan is 64 KiB (and the one read ahead 256 KiB); the log holds about 7 MiB.
    expect(bytesRead).toBeLessThanOrEqual(64 * 1024 + 256 * 1024);
    // A whole replay still reads everything once.
    bytesRead = 0;
    let count = 0;
    for await (const _event of log.read()) count++;
    expect(count).toBe(20_000);
    expect(bytesRead).toBeLessThan(8 * 1024 * 1024);
  });

  it("reads an entity's events through the index across segments, near and far apart, some still queued, in order", async () => {
    const log = await fresh({ sync: 'none', segmentBytes: 64 * 1024 });
    const expected: string[] = [];
    for (let index = 0; index < 3000; index++) {
      // 'sparse' every 97th event (far apart), 'dense' in runs of three, the rest elsewhere.
      const entity = index % 97 === 0 ? 'sparse' : index % 10 < 3 ? 'dense' : `other${index % 7}`;
      const payload = `${entity}:${index}`.padEnd(100 + (index % 50), '.');
      if (entity === 'sparse') expected.push(payload);
      await log.append({ entity, kind, payload: bytes(payload) });
    }
    await log.flush();
    // These are accepted but, with sync 'none' and no yield to the event loop, not yet written.
    for (let index = 0; index < 3; index++) {
      const payload = `sparse:queued${index}`;
      expected.push(payload);
      await log.append({ entity: 'sparse', kind, payload: bytes(payload) });
    }
    const read: string[] = [];
    for await (const event of log.readEntity('sparse')) read.push(text(event.payload));
    expect(read).toEqual(expected);
    const fromSequence: number[] = [];
    for await (const event of log.readEntity('sparse', 30)) fromSequence.push(event.sequence);
    expect(fromSequence).toEqual(Array.from({ length: expected.length - 29 }, (_, index) => 30 + index));
    let dense = 0;
    let previous = 0;
    for await (const event of log.readEntity('dense')) {
      expect(event.entity).toBe('dense');
      expect(event.sequence).toBe(previous + 1);
      previous = event.sequence;
      dense++;
    }
    expect(dense).toBe(log.sequenceOf('dense'));
  });

  it('events read from segments share their read buffer: what a reader does to them never reaches the log or another read', async () => {
    const log = await fresh({ sync: 'none', segmentBytes: 64 * 1024 });
    const payloads = Array.from({ length: 2000 }, (_, index) => `event ${index}`.padEnd(64 + (index % 200), '.'));
    for (let index = 0; index < payloads.length; index += 100) {
      await log.appendBatch(
        payloads.slice(index, index + 100).map((payload) => ({ entity: `e${index % 7}`, kind, payload: bytes(payload) })),
      );
    }
    await log.flush();
    const kept: Uint8Array[] = [];
    const hashes: string[] = [];
    for await (const event of log.read()) {
      // Views of one read buffer: several events share it.
      expect(event.payload.buffer).toBe(event.storedPayload.buffer);
      kept.push(event.payload.slice());
      hashes.push(Buffer.from(event.hash).toString('hex'));
      event.payload.fill(0xff);
      event.hash.fill(0);
    }
    expect(kept.map(text)).toEqual(payloads);
    const again: string[] = [];
    const hashesAgain: string[] = [];
    for await (const event of log.read()) {
      again.push(text(event.payload));
      hashesAgain.push(Buffer.from(event.hash).toString('hex'));
    }
    expect(again).toEqual(payloads);
    expect(hashesAgain).toEqual(hashes);
    for (const entity of ['e0', 'e3']) for await (const event of log.readEntity(entity)) event.payload.fill(0);
    expect(text((await log.at(1))?.payload ?? bytes(''))).toBe(payloads[0]);
    expect((await log.verify()).ok).toBe(true);
  });

  it('an event read while its frame is still queued is a copy: changing it does not change what is written', async () => {
    const log = await fresh({ sync: 'none' });
    await log.append({ entity: 'a', kind, payload: bytes('written') });
    await log.flush();
    // Accepted but, with sync 'none' and no yield to the event loop, not yet written.
    const queued = await log.append({ entity: 'a', kind, payload: bytes('queued') });
    const event = await log.at(queued.position);
    event?.payload.fill(0x21);
    event?.hash.fill(0);
    await log.flush();
    expect(text((await log.at(queued.position))?.payload ?? bytes(''))).toBe('queued');
    expect((await log.verify()).ok).toBe(true);
  });

  it('more entity names than the name caches hold read back exactly, written and read in any order', async () => {
    const log = await fresh({ sync: 'none' });
    const names = Array.from({ length: 20_000 }, (_, index) => `entity-${(index * 7919) % 20_000}-é`);
    for (let index = 0; index < names.length; index += 1000) {
      await log.appendBatch(names.slice(index, index + 1000).map((entity) => ({ entity, kind, payload: bytes(entity) })));
    }
    await log.flush();
    let index = 0;
    for await (const event of log.read()) {
      expect(event.entity).toBe(names[index]);
      expect(text(event.payload)).toBe(names[index]);
      index++;
    }
    expect(index).toBe(names.length);
    expect(log.entities().length).toBe(names.length);
  });

  it('appends a batch atomically, all or nothing', async () => {
    const log = await fresh();
    const receipt = await log.appendBatch([
      { entity: 'a', kind, payload: bytes('1') },
      { entity: 'b', kind, payload: bytes('2') },
    ]);
    expect(receipt.events.map((event) => event.position)).toEqual([1, 2]);
    const error = await log
      .appendBatch([
        { entity: 'a', kind, payload: bytes('3') },
        { entity: 'a', kind: 0xd001, payload: bytes('reserved') },
      ])
      .catch((caught: unknown) => caught);
    expect(EventLogError.is(error, 'InvalidArgument')).toBe(true);
    expect(log.head).toBe(2);
  });

  it('refuses bad input with InvalidArgument and writes nothing', async () => {
    const log = await fresh();
    const cases: unknown[] = [
      { entity: '', kind, payload: bytes('x') },
      { entity: 'a\n', kind, payload: bytes('x') },
      { entity: 'a', kind: 0x0001, payload: bytes('x') },
      { entity: 'a', kind: 0xd000, payload: bytes('x') },
      { entity: 'a', kind: 70000, payload: bytes('x') },
      { entity: 'a', kind, payload: 'text' },
      { entity: 'a', kind, payload: bytes('x'), parents: ['not-a-uuid'] },
      { entity: 'a', kind, payload: bytes('x'), id: 'NOT-A-UUID' },
      { entity: 'x'.repeat(1025), kind, payload: bytes('x') },
    ];
    for (const input of cases) {
      const error = await log.append(input as never).catch((caught: unknown) => caught);
      expect(EventLogError.is(error, 'InvalidArgument'), JSON.stringify(input)).toBe(true);
    }
    expect(log.head).toBe(0);
  });
});

describe('expected sequences, idempotency and gates', () => {
  it('checks expectedSequence per entity and writes nothing on a mismatch', async () => {
    const log = await fresh();
    await log.append({ entity: 'a', kind, payload: bytes('1') }, { expectedSequence: 0 });
    await log.append({ entity: 'a', kind, payload: bytes('2') }, { expectedSequence: 1 });
    const error = await log.append({ entity: 'a', kind, payload: bytes('3') }, { expectedSequence: 1 }).catch((caught: unknown) => caught);
    expect(EventLogError.is(error, 'SequenceMismatch')).toBe(true);
    expect((error as EventLogError).reason).toEqual({ entity: 'a', expected: 1, actual: 2 });
    await log.appendBatch(
      [
        { entity: 'a', kind, payload: bytes('3') },
        { entity: 'b', kind, payload: bytes('1') },
      ],
      { expectedSequence: { a: 2, b: 0 } },
    );
    expect([log.sequenceOf('a'), log.sequenceOf('b'), log.head]).toEqual([3, 1, 4]);
  });

  it('returns the original receipt for a retried idempotency key, also after reopening', async () => {
    const fs = new MemoryFileSystem();
    const log = await openEventLog({ dir: '/log', fs });
    const first = await log.appendBatch(
      [
        { entity: 'a', kind, payload: bytes('1') },
        { entity: 'a', kind, payload: bytes('2') },
      ],
      { idempotencyKey: 'order-7' },
    );
    const retry = await log.append({ entity: 'a', kind, payload: bytes('different') }, { idempotencyKey: 'order-7' });
    expect(retry.duplicate).toBe(true);
    expect(retry.events).toEqual(first.events);
    expect(log.head).toBe(2);
    await log.close();
    const reopened = await openEventLog({ dir: '/log', fs });
    open.push(reopened);
    const after = await reopened.append({ entity: 'a', kind, payload: bytes('x') }, { idempotencyKey: 'order-7' });
    expect(after.duplicate).toBe(true);
    expect(after.events).toEqual(first.events);
    expect(reopened.head).toBe(2);
  });

  it('keeps a batch label with the batch, on its first event, also after reopening; a label deduplicates nothing', async () => {
    const fs = new MemoryFileSystem();
    const log = await openEventLog({ dir: '/log', fs });
    const batch = [
      { entity: 'a', kind, payload: bytes('1') },
      { entity: 'a', kind, payload: bytes('2') },
    ];
    await log.appendBatch(batch, { label: 'import:2' });
    const again = await log.appendBatch(batch, { label: 'import:2' });
    expect(again.duplicate).toBe(false);
    expect(log.head).toBe(4);
    await expect(log.append(batch[0] as (typeof batch)[0], { label: 'x', idempotencyKey: 'y' })).rejects.toThrow(/not both/);
    await expect(log.append(batch[0] as (typeof batch)[0], { idempotencyKey: 'label:x' })).rejects.toThrow(/must not start/);
    await log.close();
    const reopened = await openEventLog({ dir: '/log', fs });
    open.push(reopened);
    const seen: Array<[number, string | undefined, string | undefined]> = [];
    for await (const event of reopened.read()) seen.push([event.position, event.label, event.idempotencyKey]);
    expect(seen).toEqual([
      [1, 'import:2', undefined],
      [2, undefined, undefined],
      [3, 'import:2', undefined],
      [4, undefined, undefined],
    ]);
    // A label read back is no idempotency key: the same text as a key appends.
    expect((await reopened.append({ entity: 'a', kind, payload: bytes('3') }, { idempotencyKey: 'import:2' })).duplicate).toBe(false);
  });

  it('runs gates inside the critical section and denies with a structured reason, writing nothing', async () => {
    const limit = 3;
    const log = await fresh({
      gates: [
        (context) => {
          const adding = context.events.filter((event) => event.entity === 'cart').length;
          return context.sequenceOf('cart') + adding > limit ? { deny: { code: 'cart-full', limit } } : undefined;
        },
      ],
    });
    const appends = Array.from({ length: 6 }, (_, index) => log.append({ entity: 'cart', kind, payload: bytes(String(index)) }));
    const outcomes = await Promise.allSettled(appends);
    expect(outcomes.filter((outcome) => outcome.status === 'fulfilled').length).toBe(limit);
    const denied = outcomes.find((outcome) => outcome.status === 'rejected') as PromiseRejectedResult;
    expect(EventLogError.is(denied.reason, 'GateDenied')).toBe(true);
    expect((denied.reason as EventLogError).reason).toEqual({ code: 'cart-full', limit });
    const perAppend = await log
      .append({ entity: 'other', kind, payload: bytes('x') }, { gate: () => ({ deny: 'closed for the day' }) })
      .catch((caught: unknown) => caught);
    expect((perAppend as EventLogError).reason).toBe('closed for the day');
    expect(log.head).toBe(limit);
  });
});

describe('durability', () => {
  for (const sync of ['always', 'group', 'interval', 'none'] as SyncMode[]) {
    it(`sync '${sync}': receipts resolve durable once fsynced, and durable events survive a crash`, async () => {
      const fs = new SimulatedFileSystem();
      const log = await openEventLog({ dir: '/log', fs, sync, syncIntervalMs: 5 });
      const receipts = await Promise.all(
        Array.from({ length: 20 }, (_, index) => log.append({ entity: 'e', kind, payload: bytes(String(index)) })),
      );
      if (sync === 'none') await log.flush();
      await Promise.all(receipts.map((receipt) => receipt.durable));
      expect(log.durableHead).toBe(20);
      fs.crash(7);
      const reopened = await openEventLog({ dir: '/log', fs, sync });
      expect(reopened.head).toBe(20);
      expect((await reopened.verify()).ok).toBe(true);
      await reopened.close();
    });
  }

  it('group commit: appends that arrive during an fsync share the next one', async () => {
    const fs = new SimulatedFileSystem();
    const log = await openEventLog({ dir: '/log', fs, sync: 'group' });
    const syncsBefore = fs.durableLog.filter((operation) => operation.op === 'sync').length;
    await Promise.all(
      Array.from({ length: 64 }, (_, index) =>
        log.append({ entity: `e${index}`, kind, payload: bytes('x') }).then((receipt) => receipt.durable),
      ),
    );
    const syncs = fs.durableLog.filter((operation) => operation.op === 'sync').length - syncsBefore;
    expect(syncs).toBeGreaterThan(0);
    expect(syncs).toBeLessThan(64);
    await log.close();
  });

  it('an injected EIO fails the append, leaves nothing visible, and later appends continue', async () => {
    const fs = new SimulatedFileSystem();
    const log = await openEventLog({ dir: '/log', fs, sync: 'group' });
    await (await log.append({ entity: 'a', kind, payload: bytes('kept') })).durable;
    fs.failAt(fs.operations, 'EIO'); // the next write
    const error = await log.append({ entity: 'a', kind, payload: bytes('lost') }).catch((caught: unknown) => caught);
    expect(EventLogError.is(error, 'IoFailed')).toBe(true);
    expect(log.head).toBe(1);
    await log.append({ entity: 'a', kind, payload: bytes('after') });
    const payloads = [];
    for await (const event of log.read()) payloads.push(text(event.payload));
    expect(payloads).toEqual(['kept', 'after']);
    expect((await log.verify()).ok).toBe(true);
    await log.close();
  });

  it("with sync 'none', a receipt whose write failed rejects its durability, even after a later batch took its position", async () => {
    const fs = new SimulatedFileSystem();
    const log = await openEventLog({ dir: '/log', fs, sync: 'none' });
    await log.append({ entity: 'a', kind, payload: bytes('kept') });
    await log.flush();
    fs.failAt(fs.operations, 'EIO'); // the next write
    const lost = await log.append({ entity: 'a', kind, payload: bytes('lost') });
    expect(lost.position).toBe(2);
    await log.flush().catch(() => undefined); // the write fails; the batch is rolled back
    const after = await log.append({ entity: 'a', kind, payload: bytes('after') });
    expect(after.position).toBe(2);
    await log.flush();
    await expect(after.durable).resolves.toBeUndefined();
    const outcome = await lost.durable.catch((caught: unknown) => caught);
    expect(EventLogError.is(outcome, 'IoFailed'), String(outcome)).toBe(true);
    expect(text((await log.at(2))?.payload ?? bytes(''))).toBe('after');
    await log.close();
  });

  it("with sync 'none', an appender that never yields to the event loop still gets its events written: memory stays bounded", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'weft-backlog-'));
    try {
      const log = await openEventLog({ dir, sync: 'none' });
      const payload = new Uint8Array(1024);
      const count = 24 * 1024; // 24 MiB of payloads
      for (let index = 0; index < count; index++) await log.append({ entity: 'e', kind, payload });
      // Still inside the loop's turn: everything but a bounded backlog (256 KiB) reached the file already.
      const onDisk = readdirSync(dir)
        .filter((name) => name.startsWith('seg-'))
        .reduce((sum, name) => sum + statSync(join(dir, name)).size, 0);
      expect(onDisk).toBeGreaterThan(count * 1024 - 1024 * 1024);
      await log.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("with sync 'none', an appender keeps appending while a write is in flight, and waits once a second group is queued", async () => {
    // Writes are held until released: the appender must stop with at most two groups (256 KiB each) in memory,
    // the one being written and the next, and go on once the write completes.
    let held: { promise: Promise<void>; release: () => void } | undefined;
    class HeldWrites extends MemoryFileSystem {
      override async open(path: string, options?: OpenOptions): Promise<LogFile> {
        const file = await super.open(path, options);
        return {
          size: () => file.size(),
          read: (position, length) => file.read(position, length),
          write: async (data, position) => {
            await held?.promise;
            return file.write(data, position);
          },
          sync: () => file.sync(),
          truncate: (size) => file.truncate(size),
          close: () => file.close(),
        };
      }
    }
    const fs = new HeldWrites();
    const log = await fresh({ fs, sync: 'none' });
    let release = () => {};
    held = { promise: new Promise<void>((resolve) => (release = resolve)), release: () => release() };
    const payload = new Uint8Array(1024);
    const count = 2000;
    const appender = (async () => {
      for (let index = 0; index < count; index++) await log.append({ entity: 'e', kind, payload });
    })();
    let parkedAt = -1;
    try {
      while (parkedAt !== log.head) {
        parkedAt = log.head;
        for (let turn = 0; turn < 5; turn++) await new Promise((resolve) => setImmediate(resolve));
      }
    } finally {
      held = undefined;
      release();
      await appender;
    }
    const group = 256 * 1024;
    expect(parkedAt * 1024).toBeGreaterThan(group + 1024);
    expect(parkedAt * 1024).toBeLessThanOrEqual(2 * group + 2048);
    expect(log.head).toBe(count);
    await log.close();
    const reopened = await fresh({ fs });
    expect(reopened.head).toBe(count);
  });

  it('short writes are completed, and a failed fsync fails the log closed until it is reopened', async () => {
    const fs = new SimulatedFileSystem();
    const log = await openEventLog({ dir: '/log', fs, sync: 'always' });
    fs.failAt(fs.operations, 'short-write');
    await (await log.append({ entity: 'a', kind, payload: bytes('x'.repeat(100)) })).durable;
    fs.failAt(fs.operations + 1, 'EIO'); // the write succeeds, its fsync fails
    const receipt = log.append({ entity: 'a', kind, payload: bytes('not durable') });
    const outcome = await receipt
      .then(
        (value) => value.durable,
        (caught: unknown) => Promise.reject(caught),
      )
      .catch((caught: unknown) => caught);
    expect(EventLogError.is(outcome, 'IoFailed'), String(outcome)).toBe(true);
    const refused = await log.append({ entity: 'a', kind, payload: bytes('refused') }).catch((caught: unknown) => caught);
    expect(EventLogError.is(refused, 'Closed')).toBe(true);
    await log.close().catch(() => undefined);
    const reopened = await openEventLog({ dir: '/log', fs });
    expect((await reopened.verify()).ok).toBe(true);
    expect(text((await reopened.at(1))?.payload ?? bytes(''))).toBe('x'.repeat(100));
    await reopened.close();
  });

  it('rotates segments at the configured size without splitting a batch', async () => {
    const fs = new MemoryFileSystem();
    const log = await openEventLog({ dir: '/log', fs, segmentBytes: 1024 });
    for (let index = 0; index < 20; index++) {
      await log.appendBatch(Array.from({ length: 3 }, () => ({ entity: 'e', kind, payload: bytes('y'.repeat(50)) })));
    }
    const segments = (await fs.readdir('/log')).filter((name) => name.startsWith('seg-'));
    expect(segments.length).toBeGreaterThan(3);
    await log.close();
    const reopened = await openEventLog({ dir: '/log', fs });
    expect(reopened.head).toBe(60);
    expect(await reopened.verify()).toMatchObject({ ok: true, events: 60, segments: segments.length });
    await reopened.close();
  });
});

describe('recovery', () => {
  it('truncates a torn tail of the last segment and keeps everything before it', async () => {
    const fs = new MemoryFileSystem();
    const log = await openEventLog({ dir: '/log', fs });
    for (let index = 0; index < 5; index++) await log.append({ entity: 'e', kind, payload: bytes(`p${index}`) });
    await log.close();
    const [segment] = (await fs.readdir('/log')).filter((name) => name.startsWith('seg-'));
    const path = `/log/${segment}`;
    const size = fs.contents(path).length;
    fs.corrupt(path, size, bytes('\u0050\u0000\u0000\u0000garbage-of-a-torn-write'));
    const reopened = await openEventLog({ dir: '/log', fs });
    expect(reopened.head).toBe(5);
    expect(fs.contents(path).length).toBe(size);
    await reopened.close();
  });

  it('a frame larger than a read chunk that ends exactly at its segment end is valid, in a sealed segment and at the tail', async () => {
    const fs = new MemoryFileSystem();
    // Each 100 KiB payload fills a segment by itself: every segment ends exactly where its one frame ends.
    const log = await openEventLog({ dir: '/log', fs, segmentBytes: 64 * 1024 });
    const payloads = [0, 1, 2].map((index) => new Uint8Array(100 * 1024).fill(index + 1));
    for (const payload of payloads) await log.append({ entity: 'big', kind, payload });
    await log.close();
    const segments = (await fs.readdir('/log')).filter((name) => name.startsWith('seg-')).sort();
    expect(segments.length).toBe(3);
    const sizes = segments.map((name) => fs.contents(`/log/${name}`).length);
    const reopened = await openEventLog({ dir: '/log', fs });
    expect(reopened.head).toBe(3);
    // Nothing was taken for a torn tail: the last segment keeps its whole frame.
    expect(segments.map((name) => fs.contents(`/log/${name}`).length)).toEqual(sizes);
    const read: Uint8Array[] = [];
    for await (const event of reopened.read()) read.push(event.payload.slice());
    expect(read.map((payload) => [payload.length, payload[0]])).toEqual(payloads.map((payload) => [payload.length, payload[0]]));
    expect((await reopened.verify()).ok).toBe(true);
    await reopened.close();
  });

  it('refuses to open when a sealed segment is damaged, naming the segment and offset', async () => {
    const fs = new MemoryFileSystem();
    const log = await openEventLog({ dir: '/log', fs, segmentBytes: 512 });
    for (let index = 0; index < 20; index++) await log.append({ entity: 'e', kind, payload: bytes('z'.repeat(40)) });
    await log.close();
    const [first] = (await fs.readdir('/log')).filter((name) => name.startsWith('seg-')).sort();
    fs.corrupt(`/log/${first}`, 100, new Uint8Array([0xff, 0xff]));
    const error = await openEventLog({ dir: '/log', fs }).catch((caught: unknown) => caught);
    expect(EventLogError.is(error, 'Corrupt')).toBe(true);
    expect((error as EventLogError).segment).toBe(first);
    expect((error as EventLogError).offset).toBeGreaterThan(0);
    expect((error as EventLogError).message).toContain(first);
  });

  it('opens a segment read in chunks: batches across chunk ends and a batch larger than a chunk are indexed whole, and damage past the first chunk is named at its offset', async () => {
    const fs = new MemoryFileSystem();
    const log = await openEventLog({ dir: '/log', fs, sync: 'none' });
    const expected: string[] = [];
    // Batches of 1 to 7 events of 3 to 70 KiB: about 11 MiB, so frames and batches cross the 4 MiB chunk ends.
    for (let batch = 0; batch < 50; batch++) {
      const inputs = Array.from({ length: 1 + (batch % 7) }, (_, index) => {
        const text = `${batch}.${index}:`.padEnd(3 * 1024 + ((batch * 7919 + index * 104_729) % (67 * 1024)), 'x');
        expected.push(text);
        return { entity: `e${batch % 5}`, kind, payload: bytes(text) };
      });
      await log.appendBatch(inputs);
    }
    // One batch of 5 MiB, larger than a chunk.
    const large = Array.from({ length: 5 }, (_, index) => `large ${index}`.padEnd(1024 * 1024, 'y'));
    await log.appendBatch(large.map((text) => ({ entity: 'big', kind, payload: bytes(text) })));
    expected.push(...large);
    await log.append({ entity: 'e0', kind, payload: bytes('last') });
    expected.push('last');
    await log.close();
    const reopened = await openEventLog({ dir: '/log', fs });
    expect(reopened.head).toBe(expected.length);
    const read: string[] = [];
    for await (const event of reopened.read()) read.push(text(event.payload));
    expect(read).toEqual(expected);
    expect(reopened.sequenceOf('big')).toBe(5);
    await reopened.close();

    const [segment] = (await fs.readdir('/log')).filter((name) => name.startsWith('seg-'));
    const path = `/log/${segment}`;
    const damagedAt = 6 * 1024 * 1024 + 100; // in the second chunk, well inside what was made durable
    const original = fs.contents(path)[damagedAt] as number;
    fs.corrupt(path, damagedAt, new Uint8Array([original ^ 0xff]));
    const error = await openEventLog({ dir: '/log', fs }).catch((caught: unknown) => caught);
    expect(EventLogError.is(error, 'Corrupt'), String(error)).toBe(true);
    expect((error as EventLogError).segment).toBe(segment);
    const offset = (error as EventLogError).offset as number;
    expect(offset).toBeGreaterThan(4 * 1024 * 1024);
    expect(offset).toBeLessThanOrEqual(damagedAt);
  });

  it('verify() names the first bad frame', async () => {
    const fs = new MemoryFileSystem();
    const log = await openEventLog({ dir: '/log', fs });
    // Payloads long enough that random header bytes (ids, hashes) never contain one by chance.
    for (let index = 0; index < 5; index++) await log.append({ entity: 'e', kind, payload: bytes(`payload number ${index}`) });
    const [segment] = (await fs.readdir('/log')).filter((name) => name.startsWith('seg-'));
    const third = await log.at(3);
    const contents = fs.contents(`/log/${segment}`);
    const at = Buffer.from(contents).indexOf(Buffer.from('payload number 2'));
    fs.corrupt(`/log/${segment}`, at, bytes('XX'));
    const result = await log.verify();
    expect(result.ok).toBe(false);
    if (!result.ok) {
      expect(result.segment).toBe(segment);
      expect(result.events).toBe(2);
      expect(result.problem).toContain('CRC');
    }
    expect(third?.sequence).toBe(3);
    await log.close();
  });

  it('holds a single-writer lock: a second writer gets Locked', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'weft-lock-'));
    try {
      const log = await openEventLog({ dir });
      const error = await openEventLog({ dir }).catch((caught: unknown) => caught);
      expect(EventLogError.is(error, 'Locked')).toBe(true);
      await log.close();
      const again = await openEventLog({ dir });
      await again.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('subscriptions, causal walks and projections', () => {
  it('a subscription catches up, says caughtUp, then tails live appends', async () => {
    const log = await fresh();
    await log.append({ entity: 'a', kind, payload: bytes('1') });
    await log.append({ entity: 'b', kind, payload: bytes('2') });
    const controller = new AbortController();
    const seen: SubscriptionItem[] = [];
    const done = (async () => {
      for await (const item of log.subscribe({ signal: controller.signal })) {
        seen.push(item);
        if (item.type === 'caughtUp') await log.append({ entity: 'a', kind, payload: bytes('3') });
        if (item.type === 'event' && item.event.position === 3) controller.abort();
      }
    })();
    await done;
    expect(seen.map((item) => (item.type === 'event' ? text(item.event.payload) : `caughtUp@${item.position}`))).toEqual([
      '1',
      '2',
      'caughtUp@2',
      '3',
    ]);
  });

  it('walks ancestors and descendants and reports missing parents explicitly', async () => {
    const log = await fresh();
    const ghost = '0190aaaa-0000-7000-8000-000000000000' as EventId;
    const root = (await log.append({ entity: 'doc', kind, payload: bytes('root') })).events[0]?.id as EventId;
    const left = (await log.append({ entity: 'doc', kind, payload: bytes('left'), parents: [root] })).events[0]?.id as EventId;
    const right = (await log.append({ entity: 'doc', kind, payload: bytes('right'), parents: [root, ghost] })).events[0]?.id as EventId;
    const merge = (await log.append({ entity: 'doc', kind, payload: bytes('merge'), parents: [left, right] })).events[0]?.id as EventId;
    const ancestors = await log.ancestors(merge);
    expect(ancestors.events.map((event) => text(event.payload))).toEqual(['root', 'left', 'right']);
    expect(ancestors.missing).toEqual([ghost]);
    const descendants = await log.descendants(root);
    expect(descendants.events.map((event) => text(event.payload))).toEqual(['left', 'right', 'merge']);
    expect(log.missingParents()).toEqual([ghost]);
  });

  it('folds projections, resumes from a cached state, and drops the cache when the log no longer matches', async () => {
    const fs = new MemoryFileSystem();
    const log = await openEventLog({ dir: '/log', fs });
    for (let index = 1; index <= 4; index++) await log.append({ entity: 'counter', kind, payload: bytes(String(index)) });
    let calls = 0;
    const sum = (state: number, event: { payload: Uint8Array }) => {
      calls++;
      return state + Number(text(event.payload));
    };
    expect((await log.project({ entity: 'counter', cacheKey: 'sum' }, sum, 0)).state).toBe(10);
    await log.append({ entity: 'counter', kind, payload: bytes('5') });
    calls = 0;
    expect((await log.project({ entity: 'counter', cacheKey: 'sum' }, sum, 0)).state).toBe(15);
    expect(calls).toBe(1);
    await log.close();
    // Another log at the same path whose event 5 differs: the cache must not be used for it.
    const other = await openEventLog({ dir: '/other', fs });
    open.push(other);
    for (let index = 1; index <= 5; index++) await other.append({ entity: 'counter', kind, payload: bytes('1') });
    calls = 0;
    expect((await other.project({ entity: 'counter', cacheKey: 'sum' }, sum, 0)).state).toBe(5);
    expect(calls).toBe(5);
  });
});
