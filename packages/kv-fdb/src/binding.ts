import { KvError, KvErrorCode } from '@weft/kv';
import { kvError } from '@weft/kv/backend';
import type { FdbDatabase, FdbRangeOptions, FdbTransaction, FdbWatch } from './transactor.js';

/**
 * The part of the `foundationdb` npm binding's `Transaction` the backend uses,
 * typed here so this package builds and type-checks without the binding
 * installed.
 */
export interface BindingTransaction {
  get(key: Buffer): Promise<Buffer | undefined>;
  getRangeAll(start: Buffer, end: Buffer, options?: { limit?: number; reverse?: boolean }): Promise<Array<[Buffer, Buffer]>>;
  set(key: Buffer, value: Buffer): void;
  clear(key: Buffer): void;
  clearRange(start: Buffer, end: Buffer): void;
  setVersionstampedKeyBuf(prefix: Buffer | undefined, suffix: Buffer | undefined, value: Buffer): void;
  setVersionstampPrefixedValue(key: Buffer, value?: Buffer, prefix?: Buffer): void;
  watch(key: Buffer): FdbWatch;
  getVersionstamp(): { promise: Promise<Buffer> };
  setOption(option: number, value?: number | string | Buffer): void;
  rawCommit(): Promise<void>;
  rawOnError(code: number): Promise<void>;
  rawCancel(): void;
}

/** The part of the binding's `Database` the backend uses. */
export interface BindingDatabase {
  rawCreateTransaction(): BindingTransaction;
  close(): void;
}

/** The part of the binding's module the backend uses. */
export interface BindingModule {
  setAPIVersion(version: number): void;
  open(clusterFile?: string): BindingDatabase;
}

/** The binding's `TransactionOptionCode.Timeout`. */
const timeoutOption = 500;

/** The FDB API version the backend asks for unless told otherwise (FoundationDB 7.2 and later). */
export const defaultApiVersion = 720;

const install =
  'install the FoundationDB client package for your platform (foundationdb-clients, 7.1 or later, from https://github.com/apple/foundationdb/releases), then `npm install foundationdb`; see docs/guides/foundationdb.md';

/**
 * Loads the `foundationdb` binding and sets its API version. The binding is
 * an optional peer dependency that needs the native `libfdb_c` library, so
 * both a missing package and a missing library become one typed error saying
 * what to install.
 *
 * @param importer how to import the binding; tests replace it to simulate a missing library
 * @throws {KvError} `Unsupported` when the binding or `libfdb_c` is missing
 */
export async function loadFdbBinding(
  apiVersion: number = defaultApiVersion,
  importer: () => Promise<unknown> = importBinding,
): Promise<BindingModule> {
  let loaded: unknown;
  try {
    loaded = await importer();
  } catch (error) {
    const code = (error as { code?: unknown } | null)?.code;
    const message = error instanceof Error ? error.message : String(error);
    if (code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND') {
      throw kvError(KvErrorCode.Unsupported, 'fdb', `the foundationdb npm package is not installed: ${install}`, { cause: error });
    }
    if (code === 'ERR_DLOPEN_FAILED' || message.includes('libfdb_c')) {
      throw kvError(KvErrorCode.Unsupported, 'fdb', `the FoundationDB client library (libfdb_c) cannot be loaded: ${install}`, {
        cause: error,
      });
    }
    throw kvError(KvErrorCode.Unsupported, 'fdb', `the foundationdb binding failed to load (${message}): ${install}`, { cause: error });
  }
  const module = ((loaded as { default?: unknown }).default ?? loaded) as Partial<BindingModule>;
  if (typeof module.setAPIVersion !== 'function' || typeof module.open !== 'function') {
    throw kvError(KvErrorCode.Unsupported, 'fdb', `the foundationdb package does not look like the FoundationDB binding: ${install}`);
  }
  try {
    module.setAPIVersion(apiVersion);
  } catch (error) {
    // The API version is process-wide: another part of the program may have set it first.
    const message = error instanceof Error ? error.message : String(error);
    if (!message.includes(`already initialized with API version ${apiVersion}`)) {
      throw kvError(KvErrorCode.Unsupported, 'fdb', `cannot use FDB API version ${apiVersion}: ${message}`, { cause: error });
    }
  }
  return module as BindingModule;
}

function importBinding(): Promise<unknown> {
  // A variable specifier keeps TypeScript from resolving the optional package at build time.
  const specifier = 'foundationdb';
  return import(specifier);
}

/** True for a database object of the binding (rather than an {@link FdbDatabase}). */
export function isBindingDatabase(database: unknown): database is BindingDatabase {
  return typeof (database as BindingDatabase | null)?.rawCreateTransaction === 'function';
}

/** Adapts the binding's database to the backend's transaction interface. */
export function wrapBindingDatabase(database: BindingDatabase): FdbDatabase {
  return {
    createTransaction(options = {}) {
      const tn = database.rawCreateTransaction();
      if (options.timeoutMs !== undefined) tn.setOption(timeoutOption, options.timeoutMs);
      return new BindingTransactionAdapter(tn);
    },
    close() {
      database.close();
    },
  };
}

class BindingTransactionAdapter implements FdbTransaction {
  readonly #tn: BindingTransaction;
  constructor(tn: BindingTransaction) {
    this.#tn = tn;
  }
  get(key: Buffer): Promise<Buffer | undefined> {
    return this.#tn.get(key);
  }
  getRange(start: Buffer, end: Buffer, options: FdbRangeOptions = {}): Promise<Array<[Buffer, Buffer]>> {
    const range: { limit?: number; reverse?: boolean } = {};
    if (options.limit !== undefined) range.limit = options.limit;
    if (options.reverse !== undefined) range.reverse = options.reverse;
    return this.#tn.getRangeAll(start, end, range);
  }
  set(key: Buffer, value: Buffer): void {
    this.#tn.set(key, value);
  }
  clear(key: Buffer): void {
    this.#tn.clear(key);
  }
  clearRange(start: Buffer, end: Buffer): void {
    this.#tn.clearRange(start, end);
  }
  setVersionstampedKey(prefix: Buffer, suffix: Buffer, value: Buffer): void {
    this.#tn.setVersionstampedKeyBuf(prefix, suffix, value);
  }
  setVersionstampedValue(key: Buffer, suffix: Buffer): void {
    this.#tn.setVersionstampPrefixedValue(key, suffix);
  }
  watch(key: Buffer): FdbWatch {
    return this.#tn.watch(key);
  }
  getVersionstamp(): Promise<Buffer> {
    return this.#tn.getVersionstamp().promise;
  }
  commit(): Promise<void> {
    return this.#tn.rawCommit();
  }
  async onError(error: unknown): Promise<void> {
    const code = (error as { code?: unknown } | null)?.code;
    if (typeof code !== 'number' || KvError.is(error)) throw error;
    await this.#tn.rawOnError(code);
  }
  cancel(): void {
    this.#tn.rawCancel();
  }
}
