import { fc, test } from '@fast-check/vitest';
import {
  decodeFrameBody,
  EventLogError,
  encodeFrame,
  type FrameHeader,
  hchacha20,
  loadHashers,
  loadSodiumXChaCha,
  loadXChaCha,
  MemoryFileSystem,
  nobleXChaCha,
  nodeXChaCha,
  openEventLog,
  SimulatedFileSystem,
} from '@weft/eventlog';
import { describe, expect, it } from 'vitest';

const hex = (text: string) => Uint8Array.from(Buffer.from(text.replace(/\s+/g, ''), 'hex'));
const bytes = (text: string) => new TextEncoder().encode(text);
const text = (value: Uint8Array) => new TextDecoder().decode(value);
const kind = 0x1001;
const masterKey = new Uint8Array(32).fill(7);
const seed = Number(process.env.WEFT_SEED ?? Date.now() % 2 ** 31);
const sodiumXChaCha = await loadSodiumXChaCha();
if (sodiumXChaCha === undefined) throw new Error("libsodium's WebAssembly module did not load");
const autoXChaCha = await loadXChaCha('auto');

describe('XChaCha20-Poly1305: draft-irtf-cfrg-xchacha test vectors, all three implementations', () => {
  it('HChaCha20 (section 2.2.1)', () => {
    const key = hex('000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f');
    const nonce = hex('000000090000004a0000000031415927');
    expect(Buffer.from(hchacha20(key, nonce)).toString('hex')).toBe('82413b4227b27bfed30e42508a877d73a0f9e4d58a74a853c12ec41326d3ecdc');
  });

  for (const cipher of [sodiumXChaCha, nodeXChaCha, nobleXChaCha, autoXChaCha]) {
    it(`AEAD_XChaCha20_Poly1305 (appendix A.3.1), ${cipher.name}`, () => {
      const plaintext = bytes(
        "Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.",
      );
      const aad = hex('50515253c0c1c2c3c4c5c6c7');
      const key = hex('808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f');
      const nonce = hex('404142434445464748494a4b4c4d4e4f5051525354555657');
      const sealed = cipher.seal(key, nonce, plaintext, aad);
      expect(Buffer.from(sealed).toString('hex')).toBe(
        'bd6d179d3e83d43b9576579493c0e939572a1700252bfaccbed2902c21396cbb731c7f1b0b4aa6440bf3a82f4eda7e39ae64c6708c54c216cb96b72e1213b4522f8c9ba40db5d945b11b69b982c1bb9e3f3fac2bc369488f76b2383565d3fff921f9664c97637da9768812f615c68b13b52e' +
          'c0875924c1c7987947deafd8780acf49',
      );
      expect(text(cipher.open(key, nonce, sealed, aad) ?? new Uint8Array())).toBe(text(plaintext));
      const tampered = sealed.slice();
      tampered[3] = (tampered[3] as number) ^ 1;
      expect(cipher.open(key, nonce, tampered, aad)).toBeUndefined();
    });
  }

  test.prop(
    [
      fc.uint8Array({ minLength: 32, maxLength: 32 }),
      fc.uint8Array({ minLength: 24, maxLength: 24 }),
      fc.uint8Array({ maxLength: 64 }),
      fc.integer({ min: 0, max: 64 * 1024 }),
      fc.integer(),
    ],
    { numRuns: 60, seed },
  )(
    'libsodium, node:crypto, @noble/ciphers and auto give identical bytes and open each other (lengths 0..64 KiB)',
    (key, nonce, aad, length, fill) => {
      const plaintext = new Uint8Array(length);
      for (let index = 0; index < length; index++) plaintext[index] = (fill + index * 131) & 0xff;
      const ciphers = [sodiumXChaCha, nodeXChaCha, nobleXChaCha, autoXChaCha];
      const sealed = ciphers.map((cipher) => Buffer.from(cipher.seal(key, nonce, plaintext, aad)));
      for (const other of sealed.slice(1)) expect(other.equals(sealed[0] as Buffer)).toBe(true);
      for (const opener of ciphers) {
        expect(Buffer.from(opener.open(key, nonce, sealed[0] as Buffer, aad) ?? []).equals(Buffer.from(plaintext))).toBe(true);
        // A flipped bit anywhere (ciphertext or tag) fails authentication in every implementation.
        const tampered = Uint8Array.from(sealed[0] as Buffer);
        const at = (fill >>> 0) % tampered.length;
        tampered[at] = (tampered[at] as number) ^ 0x80;
        expect(opener.open(key, nonce, tampered, aad)).toBeUndefined();
      }
    },
  );

  it('libsodium refuses a key or nonce of the wrong size instead of reading past it', () => {
    expect(() => sodiumXChaCha.seal(new Uint8Array(31), new Uint8Array(24), new Uint8Array(4), new Uint8Array(0))).toThrow(RangeError);
    expect(() => sodiumXChaCha.seal(new Uint8Array(32), new Uint8Array(12), new Uint8Array(4), new Uint8Array(0))).toThrow(RangeError);
    expect(() => sodiumXChaCha.open(new Uint8Array(33), new Uint8Array(24), new Uint8Array(20), new Uint8Array(0))).toThrow(RangeError);
    expect(sodiumXChaCha.open(new Uint8Array(32), new Uint8Array(24), new Uint8Array(15), new Uint8Array(0))).toBeUndefined();
  });

  it('a cipher option picks its implementation; auto is the default; an unknown name is refused', async () => {
    expect((await loadXChaCha()).name).toBe('auto');
    for (const name of ['auto', 'sodium', 'node', 'noble'] as const) expect((await loadXChaCha(name)).name).toBe(name);
    await expect(loadXChaCha('openssl' as 'node')).rejects.toMatchObject({ code: 'InvalidArgument' });
    // Logs written under one implementation read under every other, short payloads and long ones (auto switches at 3 KiB).
    const payloads = [3 * 1024 - 1, 3 * 1024, 3 * 1024 + 1, 20_000, 5].map((length) => new Uint8Array(length).fill(length & 0xff));
    for (const writer of ['auto', 'sodium', 'node', 'noble'] as const) {
      const fs = new MemoryFileSystem();
      const written = await openEventLog({ dir: '/log', fs, encryption: { cipher: writer } });
      for (const payload of payloads) await written.append({ entity: 'e', kind, payload });
      await written.close();
      for (const reader of ['auto', 'sodium', 'node', 'noble'] as const) {
        const read = await openEventLog({ dir: '/log', fs, encryption: { cipher: reader } });
        for (const [at, payload] of payloads.entries()) {
          expect(Buffer.from((await read.at(at + 1))?.payload ?? []).equals(Buffer.from(payload))).toBe(true);
        }
        await read.close();
      }
    }
  });
});

async function segmentBytes(fs: MemoryFileSystem, dir: string): Promise<Buffer> {
  const names = (await fs.readdir(dir)).filter((name) => name.startsWith('seg-')).sort();
  return Buffer.concat(names.map((name) => Buffer.from(fs.contents(`${dir}/${name}`))));
}

describe('encrypt-on-append', () => {
  it('no plaintext byte sequence of any payload reaches a segment file, and reads decrypt', async () => {
    const fs = new MemoryFileSystem();
    const log = await openEventLog({ dir: '/log', fs, encryption: { granularity: 'entity' } });
    const payloads = Array.from({ length: 30 }, (_, index) => `secret payload number ${index} for entity ${index % 4}`);
    for (const [index, payload] of payloads.entries()) await log.append({ entity: `e${index % 4}`, kind, payload: bytes(payload) });
    await log.flush();
    const stored = await segmentBytes(fs, '/log');
    for (const payload of payloads) expect(stored.includes(Buffer.from(payload.slice(0, 12))), payload).toBe(false);
    const read = [];
    for await (const event of log.read()) read.push([text(event.payload), event.disposition]);
    expect(read).toEqual(payloads.map((payload) => [payload, 'decrypted']));
    expect((await log.verify()).ok).toBe(true);
    await log.close();
  });

  for (const granularity of ['entity', 'scope', 'kind', 'event'] as const) {
    it(`granularity '${granularity}': shred destroys exactly the matching keys, durably`, async () => {
      const fs = new SimulatedFileSystem();
      const log = await openEventLog({ dir: '/log', fs, encryption: { granularity, masterKey } });
      await log.append({ entity: 'alice', scope: 'tenant-1', kind, payload: bytes('a1') });
      await log.append({ entity: 'bob', scope: 'tenant-2', kind, payload: bytes('b1') });
      const target =
        granularity === 'event'
          ? { eventId: (await log.at(1))?.id }
          : granularity === 'kind'
            ? { scope: 'tenant-1', kind }
            : { scope: 'tenant-1' };
      expect(await log.shred(target as never)).toBe(1);
      await log.append({ entity: 'alice', scope: 'tenant-1', kind, payload: bytes('a2 after shred') });
      const dispositions = async (opened: typeof log) => {
        const out = [];
        for await (const event of opened.read()) out.push(`${text(event.payload)}:${event.disposition}`);
        return out;
      };
      expect(await dispositions(log)).toEqual([':shredded', 'b1:decrypted', 'a2 after shred:decrypted']);
      const closed = [];
      for await (const event of log.read(1, { payloads: false })) closed.push(`${event.payload.length}:${event.disposition}`);
      expect(closed).toEqual(['0:shredded', '0:sealed', '0:sealed']);
      expect((await log.verify()).ok).toBe(true);
      await log.flush();
      fs.crash(1); // the shred returned, so it survives a crash
      const reopened = await openEventLog({ dir: '/log', fs, encryption: { granularity, masterKey } });
      expect(await dispositions(reopened)).toEqual([':shredded', 'b1:decrypted', 'a2 after shred:decrypted']);
      expect((await reopened.verify()).ok).toBe(true);
      await reopened.close();
    });
  }

  it("one entity name in two scopes has two keys: shredding one scope leaves the other's events readable, and later appends get a fresh key", async () => {
    const log = await openEventLog({ dir: '/log', fs: new MemoryFileSystem(), encryption: { granularity: 'entity' } });
    for (let round = 0; round < 3; round++) {
      await log.append({ entity: 'shared-name', scope: 'tenant-1', kind, payload: bytes(`t1-${round}`) });
      await log.append({ entity: 'shared-name', scope: 'tenant-2', kind, payload: bytes(`t2-${round}`) });
    }
    expect(await log.shred({ scope: 'tenant-1' })).toBe(1);
    await log.append({ entity: 'shared-name', scope: 'tenant-1', kind, payload: bytes('t1-after') });
    await log.append({ entity: 'shared-name', scope: 'tenant-2', kind, payload: bytes('t2-after') });
    const read = [];
    for await (const event of log.read()) read.push(`${event.scope}:${text(event.payload)}:${event.disposition}`);
    expect(read).toEqual([
      'tenant-1::shredded',
      'tenant-2:t2-0:decrypted',
      'tenant-1::shredded',
      'tenant-2:t2-1:decrypted',
      'tenant-1::shredded',
      'tenant-2:t2-2:decrypted',
      'tenant-1:t1-after:decrypted',
      'tenant-2:t2-after:decrypted',
    ]);
    await log.close();
  });

  it('subscriptions and cached projections see shredded, never plaintext from a cache', async () => {
    const log = await openEventLog({ dir: '/log', fs: new MemoryFileSystem(), encryption: {} });
    await log.append({ entity: 'alice', kind, payload: bytes('alice secret') });
    await log.append({ entity: 'bob', kind, payload: bytes('bob') });
    const concat = (state: string, event: { payload: Uint8Array }) => `${state}[${text(event.payload)}]`;
    expect((await log.project({ cacheKey: 'all' }, concat, '')).state).toBe('[alice secret][bob]');
    await log.shred({ entity: 'alice' });
    expect((await log.project({ cacheKey: 'all' }, concat, '')).state).toBe('[][bob]');
    const items = [];
    for await (const item of log.subscribe()) {
      if (item.type === 'caughtUp') break;
      items.push(`${text(item.event.payload)}:${item.event.disposition}`);
    }
    expect(items).toEqual([':shredded', 'bob:decrypted']);
    await log.close();
  });

  it('opened without its keyset, an encrypted log reads as sealed: no ciphertext posing as the payload', async () => {
    const fs = new MemoryFileSystem();
    const log = await openEventLog({ dir: '/log', fs, encryption: {} });
    await log.append({ entity: 'notes', kind, payload: bytes('a private note') });
    await log.close();
    const withoutKeys = await openEventLog({ dir: '/log', fs, readOnly: true });
    const event = await withoutKeys.at(1);
    expect(event?.disposition).toBe('sealed');
    expect(event?.payload.length).toBe(0);
    expect(event?.storedPayload.length).toBeGreaterThan(0);
    expect((await withoutKeys.verify()).ok).toBe(true);
    await withoutKeys.close();
  });

  it('an encrypted log refuses to open for writing without its encryption options, so it never takes plaintext', async () => {
    const fs = new MemoryFileSystem();
    const log = await openEventLog({ dir: '/log', fs, encryption: {} });
    await log.append({ entity: 'notes', kind, payload: bytes('a private note') });
    await log.close();
    const error = await openEventLog({ dir: '/log', fs }).catch((caught: unknown) => caught);
    expect(EventLogError.is(error, 'InvalidArgument'), String(error)).toBe(true);
    expect((error as EventLogError).message).toContain('encryption option');
    expect((error as EventLogError).message).toContain('--encrypted');
    // Nothing was written: the log still holds its one encrypted event, and no plaintext.
    const reopened = await openEventLog({ dir: '/log', fs, encryption: {} });
    expect(reopened.head).toBe(1);
    expect(text((await reopened.at(1))?.payload ?? new Uint8Array())).toBe('a private note');
    await reopened.close();
    expect((await segmentBytes(fs, '/log')).includes(Buffer.from('private'))).toBe(false);
    // Read-only without keys still works, for verify.
    const readOnly = await openEventLog({ dir: '/log', fs, readOnly: true });
    expect((await readOnly.verify()).ok).toBe(true);
    await readOnly.close();
  });

  it('reserved kinds stay plaintext and never mint a key', async () => {
    const fs = new MemoryFileSystem();
    const log = await openEventLog({ dir: '/log', fs, encryption: {} });
    const keysetBefore = fs.contents('/log/keyset').length;
    // The log's own mechanism (not in the published declarations).
    const internal = log as unknown as {
      appendReserved(inputs: Array<{ entity: string; kind: number; payload: Uint8Array }>): Promise<unknown>;
    };
    await internal.appendReserved([{ entity: 'system', kind: 0x0001, payload: bytes('log mechanism marker') }]);
    await log.flush();
    expect((await segmentBytes(fs, '/log')).includes(Buffer.from('log mechanism marker'))).toBe(true);
    expect(fs.contents('/log/keyset').length).toBe(keysetBefore);
    expect((await log.at(1))?.disposition).toBe('plain');
    await log.close();
  });

  it('tampering with ciphertext, nonce or header gives a typed error', async () => {
    const { crc32c } = await loadHashers();
    const fs = new MemoryFileSystem();
    const log = await openEventLog({ dir: '/log', fs, encryption: {} });
    await log.append({ entity: 'doc', kind, payload: bytes('the original text') });
    await log.flush();
    const [segment] = (await fs.readdir('/log')).filter((name) => name.startsWith('seg-'));
    const path = `/log/${segment}`;
    const original = fs.contents(path);
    const frameAt = 32;
    const body = original.subarray(frameAt + 8);
    const { header, payload } = decodeFrameBody(body);
    const rewrite = (changed: FrameHeader, stored: Uint8Array) => fs.corrupt(path, frameAt, encodeFrame(changed, stored, crc32c));
    const flipped = (value: Uint8Array) => {
      const copy = value.slice();
      copy[0] = (copy[0] as number) ^ 1;
      return copy;
    };
    const cases: Array<[string, () => void, string]> = [
      ['a flipped ciphertext bit (CRC recomputed)', () => rewrite(header, flipped(payload)), 'DecryptionFailed'],
      [
        'a flipped nonce bit',
        () =>
          rewrite(
            {
              ...header,
              encryption: { keyId: header.encryption?.keyId ?? 0, nonce: flipped(header.encryption?.nonce ?? new Uint8Array(24)) },
            },
            payload,
          ),
        'DecryptionFailed',
      ],
      ['a changed entity in the header', () => rewrite({ ...header, entity: 'dob' }, payload), 'DecryptionFailed'],
      ['a changed kind in the header', () => rewrite({ ...header, kind: kind + 1 }, payload), 'DecryptionFailed'],
      [
        'a flipped bit with a stale CRC',
        () => fs.corrupt(path, frameAt + 8 + body.length - 3, flipped(body.subarray(body.length - 3))),
        'InvalidFrame',
      ],
    ];
    for (const [what, tamper, code] of cases) {
      fs.corrupt(path, 0, original);
      tamper();
      const error = await log.at(1).catch((caught: unknown) => caught);
      expect(EventLogError.is(error, code as never), `${what}: ${String(error)}`).toBe(true);
    }
    fs.corrupt(path, 0, original);
    expect(text((await log.at(1))?.payload ?? new Uint8Array())).toBe('the original text');
    await log.close();
  });
});

describe('reading a stream with an unreadable event', () => {
  it('read() hands out every event before a tampered one, then its DecryptionFailed, then is done', async () => {
    const { crc32c } = await loadHashers();
    const fs = new MemoryFileSystem();
    const log = await openEventLog({ dir: '/log', fs, encryption: {} });
    // 100 events: the tampered 70th lies in the second array the reader decodes (64 a step).
    for (let index = 1; index <= 100; index++) await log.append({ entity: `e${index % 3}`, kind, payload: bytes(`event ${index}`) });
    await log.flush();
    const [segment] = (await fs.readdir('/log')).filter((name) => name.startsWith('seg-'));
    const path = `/log/${segment}`;
    const segmentBytes = fs.contents(path);
    let at = 32;
    for (let position = 1; position < 70; position++)
      at += 8 + new DataView(segmentBytes.buffer, segmentBytes.byteOffset + at).getUint32(0, true);
    const length = new DataView(segmentBytes.buffer, segmentBytes.byteOffset + at).getUint32(0, true);
    const { header, payload } = decodeFrameBody(segmentBytes.subarray(at + 8, at + 8 + length));
    expect(header.position).toBe(70);
    const flipped = payload.slice();
    flipped[0] = (flipped[0] as number) ^ 1;
    fs.corrupt(path, at, encodeFrame(header, flipped, crc32c));
    const stream = log.read();
    const seen: number[] = [];
    const error = await (async () => {
      for await (const event of stream) seen.push(event.position);
    })().catch((caught: unknown) => caught);
    expect(seen).toEqual(Array.from({ length: 69 }, (_, index) => index + 1));
    expect(EventLogError.is(error, 'DecryptionFailed')).toBe(true);
    expect(await stream.next()).toEqual({ value: undefined, done: true });
    await log.close();
  });
});

describe('the keyset and its durability fence', () => {
  it('makes the keyset durable (rename and directory fsync) before the first frame under a new key is written', async () => {
    const fs = new SimulatedFileSystem();
    const log = await openEventLog({ dir: '/log', fs, encryption: {}, sync: 'none' });
    fs.traceOperations = true;
    await log.append({ entity: 'new-entity', kind, payload: bytes('x') });
    await log.flush();
    const trace = fs.trace.map((operation) => `${operation.op} ${operation.path}`);
    const rename = trace.indexOf('rename /log/keyset.tmp');
    const syncDir = trace.indexOf('syncDir /log', rename);
    const frameWrite = trace.findIndex((operation) => operation.startsWith('write /log/seg-'));
    expect(rename).toBeGreaterThan(-1);
    expect(syncDir).toBeGreaterThan(rename);
    expect(frameWrite).toBeGreaterThan(syncDir);
    // A second append under the same key needs no keyset write.
    fs.trace.length = 0;
    await log.append({ entity: 'new-entity', kind, payload: bytes('y') });
    await log.flush();
    expect(fs.trace.some((operation) => operation.path.includes('keyset'))).toBe(false);
    await log.close();
  });

  it('a failed keyset flush fails the append closed and writes no frame; the next append flushes it', async () => {
    const fs = new SimulatedFileSystem();
    const log = await openEventLog({ dir: '/log', fs, encryption: {}, sync: 'always' });
    await (await log.append({ entity: 'a', kind, payload: bytes('first') })).durable;
    const [segment] = (await fs.readdir('/log')).filter((name) => name.startsWith('seg-'));
    const sizeBefore = fs.contents(`/log/${segment}`).length;
    fs.traceOperations = true;
    fs.failAt(fs.operations + 2, 'EIO'); // exists, open(keyset.tmp), then the write fails
    const error = await log.append({ entity: 'b', kind, payload: bytes('needs a new key') }).catch((caught: unknown) => caught);
    expect(EventLogError.is(error, 'IoFailed'), String(error)).toBe(true);
    expect(fs.contents(`/log/${segment}`).length).toBe(sizeBefore);
    expect(log.head).toBe(1);
    await (await log.append({ entity: 'b', kind, payload: bytes('second try') })).durable;
    expect(text((await log.at(2))?.payload ?? new Uint8Array())).toBe('second try');
    await log.close();
  });

  it('a missing, damaged, foreign-keyed or rolled-back keyset refuses to open; it never starts empty', async () => {
    const fs = new MemoryFileSystem();
    const log = await openEventLog({ dir: '/log', fs, encryption: { masterKey } });
    await log.append({ entity: 'a', kind, payload: bytes('1') });
    await log.close();
    const good = fs.contents('/log/keyset');
    const attempt = () => openEventLog({ dir: '/log', fs, encryption: { masterKey } }).catch((caught: unknown) => caught);

    const wrongKey = await openEventLog({ dir: '/log', fs, encryption: { masterKey: new Uint8Array(32).fill(9) } }).catch(
      (caught: unknown) => caught,
    );
    expect(EventLogError.is(wrongKey, 'KeysetInvalid'), String(wrongKey)).toBe(true);
    const noKey = await openEventLog({ dir: '/log', fs, encryption: {} }).catch((caught: unknown) => caught);
    expect(EventLogError.is(noKey, 'KeysetInvalid'), String(noKey)).toBe(true);

    fs.corrupt('/log/keyset', 20, new Uint8Array([0x55]));
    expect(EventLogError.is(await attempt(), 'KeysetInvalid')).toBe(true);

    // An older keyset (from before the key of event 2 was minted) must not be accepted.
    fs.replaceContents('/log/keyset', good);
    const reopened = await openEventLog({ dir: '/log', fs, encryption: { masterKey } });
    await reopened.append({ entity: 'new', kind, payload: bytes('2') });
    await reopened.close();
    fs.replaceContents('/log/keyset', good);
    const rolledBack = await attempt();
    expect(EventLogError.is(rolledBack, 'KeysetInvalid'), String(rolledBack)).toBe(true);
    expect((rolledBack as Error).message).toContain('does not have');
    await fs.unlink('/log/keyset');
    const missing = await attempt();
    expect(EventLogError.is(missing, 'KeysetMissing'), String(missing)).toBe(true);
  });

  it('exporting a log copies its keyset only when asked explicitly', async () => {
    const fs = new MemoryFileSystem();
    const log = await openEventLog({ dir: '/log', fs, encryption: {} });
    await log.append({ entity: 'a', kind, payload: bytes('exported') });
    const bare = await log.exportTo({ dir: '/copy-without-keys' });
    expect(bare.files.includes('keyset')).toBe(false);
    const withKeys = await log.exportTo({ dir: '/copy-with-keys' }, { includeKeyset: true });
    expect(withKeys.files.includes('keyset')).toBe(true);
    await log.close();
    const missing = await openEventLog({ dir: '/copy-without-keys', fs, encryption: {} }).catch((caught: unknown) => caught);
    expect(EventLogError.is(missing, 'KeysetMissing')).toBe(true);
    const copy = await openEventLog({ dir: '/copy-with-keys', fs, encryption: {} });
    expect(text((await copy.at(1))?.payload ?? new Uint8Array())).toBe('exported');
    await copy.close();
  });
});
