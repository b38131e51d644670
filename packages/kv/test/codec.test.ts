/**
 * The typed value layer: values of `T` in and out through a codec, on the
 * memory backend (the layer is backend-neutral: it only calls the store's
 * public methods). Bad stored bytes are a typed error naming the key; a
 * value the codec refuses writes nothing.
 */
import { bytesCodec, jsonCodec, type KvCodec, KvError, openMemoryKv, type TypedWatchEvent, withCodec } from '@weft/kv';
import { describe, expect, it } from 'vitest';

interface User {
  readonly name: string;
  readonly age: number;
}

function parseUser(value: unknown): User {
  const { name, age } = (value ?? {}) as Partial<User>;
  if (typeof name !== 'string' || typeof age !== 'number') throw new Error('not a user');
  return { name, age };
}

describe('withCodec', () => {
  it('reads, writes, compares and swaps, scans and watches values of T', async () => {
    await using kv = await openMemoryKv();
    const users = withCodec(kv, jsonCodec<User>(parseUser));
    const version = await users.create('users.ada', { name: 'Ada', age: 36 });
    const updated = await users.update('users.ada', { name: 'Ada Lovelace', age: 36 }, version);
    await users.put('users.alan', { name: 'Alan', age: 41 });
    expect(await users.get('users.ada')).toEqual({ key: 'users.ada', value: { name: 'Ada Lovelace', age: 36 }, version: updated });
    expect(await users.get('users.nobody')).toBeUndefined();
    const scanned = [];
    for await (const entry of users.scan('users')) scanned.push(entry.value.name);
    expect(scanned.sort()).toEqual(['Ada Lovelace', 'Alan']);
    const events: Array<TypedWatchEvent<User>> = [];
    for await (const event of users.watch({ prefixes: ['users'] })) {
      events.push(event);
      if (event.type === 'synced') break;
    }
    expect(events.filter((event) => event.type === 'put').map((event) => (event.type === 'put' ? event.value.age : 0))).toEqual(
      expect.arrayContaining([36, 41]),
    );
    // A compare-and-swap against a stale version is the store's own error.
    await expect(users.update('users.ada', { name: 'x', age: 0 }, version)).rejects.toSatisfy((error) =>
      KvError.is(error, 'RevisionMismatch'),
    );
  });

  it('commits typed values: all encoded before anything is sent, and a value the codec refuses writes nothing', async () => {
    await using kv = await openMemoryKv();
    const users = withCodec(kv, jsonCodec<User>(parseUser));
    const ada = await users.put('users.ada', { name: 'Ada', age: 36 });
    const [updated] = await users.commit([
      { op: 'update', key: 'users.ada', value: { name: 'Ada', age: 37 }, expected: ada },
      { op: 'create', key: 'users.alan', value: { name: 'Alan', age: 41 } },
    ]);
    expect(await users.get('users.ada')).toEqual({ key: 'users.ada', value: { name: 'Ada', age: 37 }, version: updated });
    expect((await users.get('users.alan'))?.value.age).toBe(41);
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    const refused = await users
      .commit([
        { op: 'put', key: 'users.grace', value: { name: 'Grace', age: 45 } },
        { op: 'put', key: 'users.cycle', value: cyclic as unknown as User },
      ])
      .catch((error: unknown) => error);
    expect(KvError.is(refused, 'InvalidArgument') && refused.key).toBe('users.cycle');
    expect(await users.get('users.grace')).toBeUndefined();
    await users.commit([{ op: 'delete', key: 'users.alan' }]);
    expect(await users.get('users.alan')).toBeUndefined();
  });

  it('reports stored bytes that do not decode as InvalidValue, naming the key, on get, scan and watch', async () => {
    await using kv = await openMemoryKv();
    const users = withCodec(kv, jsonCodec<User>(parseUser));
    await kv.put('users.broken', new TextEncoder().encode('{"name": 1}'));
    await kv.put('users.garbage', new Uint8Array([0xff, 0xfe]));
    for (const key of ['users.broken', 'users.garbage']) {
      const error = await users.get(key).catch((caught: unknown) => caught);
      expect(KvError.is(error, 'InvalidValue')).toBe(true);
      expect((error as KvError).key).toBe(key);
      expect((error as KvError).message).toContain(key);
      expect((error as KvError).message).toContain('json');
    }
    await expect(
      (async () => {
        for await (const _ of users.scan('users')) {
          // the first entry throws
        }
      })(),
    ).rejects.toSatisfy((error) => KvError.is(error, 'InvalidValue'));
    await expect(
      (async () => {
        for await (const _ of users.watch({ prefixes: ['users'] })) {
          // the first put throws
        }
      })(),
    ).rejects.toSatisfy((error) => KvError.is(error, 'InvalidValue'));
  });

  it('refuses a value its codec cannot encode with InvalidArgument, and writes nothing', async () => {
    await using kv = await openMemoryKv();
    const values = withCodec(kv, jsonCodec<unknown>());
    const error = await values.put('k', undefined).catch((caught: unknown) => caught);
    expect(KvError.is(error, 'InvalidArgument')).toBe(true);
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    await expect(values.create('k', cyclic)).rejects.toSatisfy((caught) => KvError.is(caught, 'InvalidArgument'));
    expect(await kv.get('k')).toBeUndefined();
  });

  it('takes bytes as they are, and a codec the user brings', async () => {
    await using kv = await openMemoryKv();
    const raw = withCodec(kv, bytesCodec);
    await raw.put('b', new Uint8Array([1, 2, 3]));
    expect((await raw.get('b'))?.value).toEqual(new Uint8Array([1, 2, 3]));
    const upper: KvCodec<string> = {
      name: 'upper-text',
      encode: (value) => new TextEncoder().encode(value.toUpperCase()),
      decode: (bytes) => new TextDecoder().decode(bytes),
    };
    const text = withCodec(kv, upper);
    await text.putWithTtl('t', 'hello', 60_000);
    expect((await text.get('t'))?.value).toBe('HELLO');
  });
});
