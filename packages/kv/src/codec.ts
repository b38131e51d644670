/**
 * A typed value layer over any `KvStore`: `withCodec(kv, codec)` reads and
 * writes values of `T` through a codec (JSON and raw bytes ship here; bring
 * your own, for example one that runs a schema library's parser). Versions,
 * cursors, compare-and-swap and watch semantics are the store's own.
 */
import { KvError, KvErrorCode } from './errors.js';
import type { KvCommitOp, KvStore, Version, WatchCursor, WatchOptions } from './types.js';

/** Turns values into bytes and back. `decode` throws on bytes it does not accept. */
export interface KvCodec<T> {
  /** Named in errors (e.g. `json`). */
  readonly name: string;
  encode(value: T): Uint8Array;
  decode(bytes: Uint8Array): T;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: true });

/**
 * JSON as UTF-8. `T` is what you promise the stored values are; to check it,
 * pass `validate` (for example a schema's `parse`), which runs on every decode.
 */
export function jsonCodec<T = unknown>(validate?: (value: unknown) => T): KvCodec<T> {
  return {
    name: 'json',
    encode: (value) => {
      const text = JSON.stringify(value);
      if (text === undefined) throw new TypeError('the value has no JSON form');
      return encoder.encode(text);
    },
    decode: (bytes) => {
      const value: unknown = JSON.parse(decoder.decode(bytes));
      return validate === undefined ? (value as T) : validate(value);
    },
  };
}

/** Bytes as they are. */
export const bytesCodec: KvCodec<Uint8Array> = {
  name: 'bytes',
  encode: (value) => {
    if (!(value instanceof Uint8Array)) throw new TypeError('the value is not a Uint8Array');
    return value;
  },
  decode: (bytes) => bytes,
};

/** A live value of `T`. */
export interface TypedEntry<T> {
  readonly key: string;
  readonly value: T;
  readonly version: Version;
}

/** A watch event with a decoded value. */
export type TypedWatchEvent<T> =
  | { readonly type: 'put'; readonly key: string; readonly value: T; readonly version: Version; readonly cursor: WatchCursor }
  | { readonly type: 'delete' | 'purge'; readonly key: string; readonly version: Version; readonly cursor: WatchCursor }
  | { readonly type: 'expire'; readonly key: string; readonly cursor: WatchCursor }
  | { readonly type: 'synced'; readonly cursor: WatchCursor };

/** A commit operation of a typed view: values are `T`, encoded with the view's codec. */
export type TypedCommitOp<T> =
  | { readonly op: 'put' | 'create'; readonly key: string; readonly value: T }
  | { readonly op: 'putWithTtl'; readonly key: string; readonly value: T; readonly ttlMs: number }
  | { readonly op: 'update'; readonly key: string; readonly value: T; readonly expected: Version }
  | { readonly op: 'delete'; readonly key: string }
  | { readonly op: 'deleteWithVersion'; readonly key: string; readonly expected: Version };

/** The typed view `withCodec` returns. Deletes, purges, keys and closing go to `store`. */
export interface TypedKv<T> {
  /** The store underneath. */
  readonly store: KvStore;
  get(key: string): Promise<TypedEntry<T> | undefined>;
  put(key: string, value: T): Promise<Version>;
  create(key: string, value: T): Promise<Version>;
  update(key: string, value: T, expected: Version): Promise<Version>;
  putWithTtl(key: string, value: T, ttlMs: number): Promise<Version>;
  /** `store.commit` with typed values: every value is encoded before anything is sent. */
  commit(ops: readonly TypedCommitOp<T>[]): Promise<Version[]>;
  scan(prefix?: string): AsyncIterable<TypedEntry<T>>;
  watch(options?: WatchOptions): AsyncIterable<TypedWatchEvent<T>>;
}

/**
 * A typed view of `kv` through `codec`.
 *
 * @throws {KvError} `InvalidArgument` when a value cannot be encoded (nothing
 *   is written); `InvalidValue` when stored bytes do not decode, naming the key
 */
export function withCodec<T>(kv: KvStore, codec: KvCodec<T>): TypedKv<T> {
  const encode = (key: string, value: T): Uint8Array => {
    try {
      return codec.encode(value);
    } catch (error) {
      throw new KvError(
        KvErrorCode.InvalidArgument,
        `[${kv.backend}] key '${key}': the ${codec.name} codec cannot encode the value: ${reason(error)}`,
        {
          backend: kv.backend,
          key,
          cause: error,
        },
      );
    }
  };
  const decode = (key: string, bytes: Uint8Array): T => {
    try {
      return codec.decode(bytes);
    } catch (error) {
      throw new KvError(
        KvErrorCode.InvalidValue,
        `[${kv.backend}] key '${key}': the stored value (${bytes.length} bytes) does not decode with the ${codec.name} codec: ${reason(error)}`,
        { backend: kv.backend, key, cause: error },
      );
    }
  };
  return {
    store: kv,
    async get(key) {
      const entry = await kv.get(key);
      return entry === undefined ? undefined : { key, value: decode(key, entry.value), version: entry.version };
    },
    put: async (key, value) => kv.put(key, encode(key, value)),
    create: async (key, value) => kv.create(key, encode(key, value)),
    update: async (key, value, expected) => kv.update(key, encode(key, value), expected),
    putWithTtl: async (key, value, ttlMs) => kv.putWithTtl(key, encode(key, value), ttlMs),
    // Anything but an array goes to the store as it is, which refuses it with the store's own words.
    commit: async (ops) =>
      kv.commit(
        Array.isArray(ops)
          ? ops.map((op) =>
              op !== null && typeof op === 'object' && 'value' in op
                ? ({ ...op, value: encode(op.key, op.value) } as KvCommitOp)
                : (op as KvCommitOp),
            )
          : (ops as never),
      ),
    async *scan(prefix) {
      for await (const entry of kv.scan(prefix)) yield { key: entry.key, value: decode(entry.key, entry.value), version: entry.version };
    },
    async *watch(options) {
      for await (const event of kv.watch(options)) {
        if (event.type === 'put') yield { ...event, value: decode(event.key, event.value) };
        else yield event;
      }
    },
  };
}

function reason(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
