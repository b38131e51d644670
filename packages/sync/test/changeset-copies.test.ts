/**
 * The device's copies of changesets (what it writes back when the store
 * forgets): records survive reopening, a record cut short by a crash is
 * dropped and the file goes on from there, and large and many records index
 * correctly across read chunks.
 */
import { randomBytes } from 'node:crypto';
import { MemoryFileSystem } from '@weft/eventlog';
import { describe, expect, it } from 'vitest';
import { ChangesetCopies } from '../src/changeset-copies.js';

const bytes = (size: number) => new Uint8Array(randomBytes(size));

describe('changeset copies', () => {
  it('keeps every copy across reopening, once per device and seq, across read chunks', async () => {
    const fs = new MemoryFileSystem();
    await fs.mkdir('/d');
    const copies = await ChangesetCopies.open(fs, '/d');
    const written = new Map<string, Uint8Array>();
    for (let seq = 1; seq <= 300; seq++) {
      const value = bytes(seq % 7 === 0 ? 300_000 : 200);
      written.set(`a/${seq}`, value);
      await copies.add('a', [{ seq, bytes: value }]);
    }
    const big = bytes(3 << 20);
    await copies.add('b', [{ seq: 1, bytes: big }]);
    await copies.add('a', [{ seq: 5, bytes: bytes(10) }]);
    await copies.close();
    const reopened = await ChangesetCopies.open(fs, '/d');
    for (const [key, value] of written) {
      const [device, seq] = key.split('/') as [string, string];
      expect(Buffer.from((await reopened.get(device, Number(seq))) as Uint8Array).equals(Buffer.from(value))).toBe(true);
    }
    expect(Buffer.from((await reopened.get('b', 1)) as Uint8Array).equals(Buffer.from(big))).toBe(true);
    expect(await reopened.get('b', 2)).toBeUndefined();
    await reopened.close();
  });

  it('drops a record cut short by a crash and appends after the last whole one', async () => {
    const fs = new MemoryFileSystem();
    await fs.mkdir('/d');
    const copies = await ChangesetCopies.open(fs, '/d');
    await copies.add('a', [
      { seq: 1, bytes: bytes(100) },
      { seq: 2, bytes: bytes(100) },
    ]);
    const whole = copies.bytes;
    await copies.add('a', [{ seq: 3, bytes: bytes(100) }]);
    await copies.close();
    const file = await fs.open('/d/sync-changesets.bin');
    await file.truncate(whole + 50);
    await file.close();
    const reopened = await ChangesetCopies.open(fs, '/d');
    expect(reopened.bytes).toBe(whole);
    expect(reopened.has('a', 2)).toBe(true);
    expect(reopened.has('a', 3)).toBe(false);
    const again = bytes(64);
    await reopened.add('a', [{ seq: 3, bytes: again }]);
    await reopened.close();
    const last = await ChangesetCopies.open(fs, '/d');
    expect(Buffer.from((await last.get('a', 3)) as Uint8Array).equals(Buffer.from(again))).toBe(true);
    await last.close();
  });
});
