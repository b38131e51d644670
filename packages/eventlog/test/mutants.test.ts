/**
 * The event log's tests must catch realistic bugs in the log itself: each
 * mutant below is one bug an author of this package could write, applied to
 * a copy of its source; the checks (each a clause a user relies on, on the
 * simulated filesystem) then run on that copy until one fails. Every mutant
 * must be caught; the check that caught each is printed.
 */
import { fileURLToPath } from 'node:url';
import { describeSourceMutants, type SourceCheck, type SourceMutant } from '@weft/kv-testkit';
import { expect } from 'vitest';

type EventLogModule = typeof import('@weft/eventlog');

const srcDir = fileURLToPath(new URL('../src', import.meta.url));
const kind = 0x1001;
const bytes = (text: string) => new TextEncoder().encode(text);

/** The newest segment file of the log in `/log`, open. */
async function lastSegment(fs: import('@weft/eventlog').MemoryFileSystem) {
  const segment = (await fs.readdir('/log'))
    .filter((name) => name.startsWith('seg-'))
    .sort()
    .at(-1) as string;
  return fs.open(`/log/${segment}`);
}

const mutants: SourceMutant[] = [
  {
    name: "verify() does not check an entity's hash chain (a payload rewritten with a matching CRC passes)",
    file: 'verify.ts',
    find: '        if (!equalBytes(hash, header.hash)) return fail(',
    replace: '        if (false) return fail(',
  },
  {
    name: "a frame larger than a read chunk that ends exactly at its segment's end is taken for a torn one",
    file: 'frame-reader.ts',
    find: '          if (offset + at + 8 + length <= segment.size) {',
    replace: '          if (offset + at + 8 + length < segment.size) {',
  },
  {
    name: 'damage inside the part of the last segment recorded as durable is cut off like a torn tail (acknowledged events lost)',
    file: 'recovery.ts',
    find: '      if (validEnd < header.checkpoint)',
    replace: '      if (false)',
  },
  {
    name: 'an expected sequence that does not match is accepted',
    file: 'append-checks.ts',
    find: '      if (current !== wanted) {',
    replace: '      if (false) {',
  },
  {
    name: 'an event id already in the log is accepted again',
    file: 'append-checks.ts',
    find: '      if (view.has(input.id) || seen.has(input.id)) throw',
    replace: '      if (false) throw',
  },
  {
    name: 'a retried idempotency key appends again',
    file: 'append-pipeline.ts',
    find: '      if (earlier !== undefined) {',
    replace: '      if (false) {',
  },
  {
    name: 'an encrypted log opens for writing without its keys (and takes plaintext)',
    file: 'log.ts',
    find: '      if (options.encryption === undefined && !log.readOnly && names.includes(keysetFileName)) {',
    replace: '      if (false) {',
  },
  {
    name: 'a shred zeroes the key but keeps it as a key (the keyset is saved with it, not marked shredded)',
    file: 'crypto/keyset.ts',
    find: '      entry.material = undefined;\n',
    replace: '',
  },
];

const checks: SourceCheck<EventLogModule>[] = [
  {
    name: 'verify() finds a payload rewritten on disk with a CRC that matches it (the hash chain breaks)',
    run: async ({ MemoryFileSystem, openEventLog, loadHashers }) => {
      const fs = new MemoryFileSystem();
      const log = await openEventLog({ dir: '/log', fs });
      await log.append({ entity: 'e', kind, payload: bytes('original payload') });
      await log.append({ entity: 'e', kind, payload: bytes('second payload') });
      await log.close();
      const file = await lastSegment(fs);
      const contents = await file.read(0, await file.size());
      const at = Buffer.from(contents).indexOf('original payload');
      contents[at] = 'O'.charCodeAt(0);
      // Frames follow the 32-byte segment header: walk their lengths to the one holding the payload, then fix its CRC.
      const view = new DataView(contents.buffer, contents.byteOffset, contents.byteLength);
      let start = 32;
      while (start + 8 + view.getUint32(start, true) <= at) start += 8 + view.getUint32(start, true);
      const { crc32c } = await loadHashers();
      view.setUint32(start + 4, crc32c(contents, start + 8, start + 8 + view.getUint32(start, true)), true);
      await file.write(contents, 0);
      await file.close();
      const reopened = await openEventLog({ dir: '/log', fs });
      try {
        expect((await reopened.verify()).ok).toBe(false);
      } finally {
        await reopened.close();
      }
    },
  },
  {
    name: "a frame larger than a read chunk that ends exactly at its segment's end is valid",
    run: async ({ MemoryFileSystem, openEventLog }) => {
      const fs = new MemoryFileSystem();
      const log = await openEventLog({ dir: '/log', fs, segmentBytes: 64 * 1024 });
      for (const fill of [1, 2, 3]) await log.append({ entity: 'big', kind, payload: new Uint8Array(100 * 1024).fill(fill) });
      await log.close();
      const reopened = await openEventLog({ dir: '/log', fs });
      try {
        expect(reopened.head).toBe(3);
        let count = 0;
        for await (const _ of reopened.read()) count++;
        expect(count).toBe(3);
      } finally {
        await reopened.close();
      }
    },
  },
  {
    name: 'damage inside what was acknowledged durable refuses the open (Corrupt), never drops events',
    run: async ({ MemoryFileSystem, openEventLog, EventLogError }) => {
      const fs = new MemoryFileSystem();
      const log = await openEventLog({ dir: '/log', fs, sync: 'always' });
      for (let index = 0; index < 5; index++) await log.append({ entity: 'e', kind, payload: bytes(`durable-${index}`) });
      await log.close();
      const file = await lastSegment(fs);
      const size = await file.size();
      const middle = await file.read(Math.floor(size / 2), 1);
      await file.write(new Uint8Array([(middle[0] as number) ^ 0xff]), Math.floor(size / 2));
      await file.close();
      const opened = await openEventLog({ dir: '/log', fs }).catch((error: unknown) => error);
      if (!EventLogError.is(opened)) await (opened as { close(): Promise<void> }).close();
      expect(EventLogError.is(opened, 'Corrupt'), String(opened)).toBe(true);
    },
  },
  {
    name: 'a torn tail is cut at recovery, and appends after it read back',
    run: async ({ MemoryFileSystem, openEventLog }) => {
      const fs = new MemoryFileSystem();
      const log = await openEventLog({ dir: '/log', fs });
      for (let index = 0; index < 5; index++) await log.append({ entity: 'e', kind, payload: bytes(`event-${index}`) });
      await log.close();
      const file = await lastSegment(fs);
      // Part of a frame, longer than the next one: what a crash in the middle of a large write leaves.
      const torn = new Uint8Array(300).fill(7);
      new DataView(torn.buffer).setUint32(0, 4000, true);
      await file.write(torn, await file.size());
      await file.close();
      const reopened = await openEventLog({ dir: '/log', fs });
      expect(reopened.head).toBe(5);
      await reopened.append({ entity: 'e', kind, payload: bytes('after the crash') });
      await reopened.close();
      const again = await openEventLog({ dir: '/log', fs });
      try {
        expect(again.head).toBe(6);
        expect((await again.verify()).ok).toBe(true);
      } finally {
        await again.close();
      }
    },
  },
  {
    name: 'appends check expected sequences, refuse ids already in the log and answer a retried idempotency key',
    run: async ({ MemoryFileSystem, openEventLog, EventLogError }) => {
      const log = await openEventLog({ dir: '/log', fs: new MemoryFileSystem() });
      try {
        const first = await log.append({ entity: 'e', kind, payload: bytes('1') }, { idempotencyKey: 'once' });
        const retried = await log.append({ entity: 'e', kind, payload: bytes('1') }, { idempotencyKey: 'once' });
        expect(retried.duplicate).toBe(true);
        expect(log.head).toBe(1);
        const stale = await log
          .append({ entity: 'e', kind, payload: bytes('2') }, { expectedSequence: 0 })
          .catch((error: unknown) => error);
        expect(EventLogError.is(stale, 'SequenceMismatch')).toBe(true);
        const again = await log
          .append({ id: first.events[0]?.id, entity: 'e', kind, payload: bytes('3') })
          .catch((error: unknown) => error);
        expect(EventLogError.is(again, 'InvalidArgument')).toBe(true);
        expect(log.head).toBe(1);
      } finally {
        await log.close();
      }
    },
  },
  {
    name: 'an encrypted log refuses a writer without its keys; a shred holds across reopening, and the scope takes new events under a new key',
    run: async ({ MemoryFileSystem, openEventLog, EventLogError }) => {
      const fs = new MemoryFileSystem();
      const log = await openEventLog({ dir: '/log', fs, encryption: {} });
      await log.append({ entity: 'e', scope: 'private', kind, payload: bytes('secret-payload') });
      await log.shred({ scope: 'private' });
      await log.close();
      const plain = await openEventLog({ dir: '/log', fs }).catch((error: unknown) => error);
      if (!EventLogError.is(plain, 'InvalidArgument')) await (plain as { close(): Promise<void> }).close();
      expect(EventLogError.is(plain, 'InvalidArgument')).toBe(true);
      const reopened = await openEventLog({ dir: '/log', fs, encryption: {} });
      try {
        expect((await reopened.at(1))?.disposition).toBe('shredded');
        await reopened.append({ entity: 'e', scope: 'private', kind, payload: bytes('after the shred') });
        const after = await reopened.at(2);
        expect(after?.disposition).toBe('decrypted');
        expect(new TextDecoder().decode(after?.payload)).toBe('after the shred');
      } finally {
        await reopened.close();
      }
    },
  },
];

describeSourceMutants<EventLogModule>('eventlog', mutants, { srcDir, checks });
