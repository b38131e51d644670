/**
 * `@weft/kv-fdb`: the `@weft/kv` contract on FoundationDB. Each mutation
 * writes its record and a versionstamped change-log entry in one
 * transaction; watches read the log in short transactions and wait on an FDB
 * watch; TTLs use an expiry index and a sweeper; values over 100 KB are
 * chunked.
 *
 * ```ts
 * import { openFdbKv } from '@weft/kv-fdb';
 * await using kv = await openFdbKv({ bucket: 'orders', clusterFile: '/etc/foundationdb/fdb.cluster' });
 * ```
 *
 * The `foundationdb` binding (and the native `libfdb_c` it loads) is an
 * optional peer dependency, loaded only when a store opens its own database.
 * {@link FdbSimulation} is an in-process simulation of the transaction
 * interface the backend uses, for running its logic where no cluster exists;
 * it is not FoundationDB.
 *
 * @packageDocumentation
 */

export { type BindingDatabase, type BindingModule, defaultApiVersion, loadFdbBinding } from './binding.js';
export { type FdbKvOptions, FdbKvStore, openFdbKv } from './open.js';
export { type FdbSimulatedFault, FdbSimulation, type FdbSimulationOptions } from './simulation.js';
export {
  type FdbDatabase,
  FdbError,
  FdbErrorCode,
  type FdbRangeOptions,
  type FdbTransaction,
  type FdbWatch,
  isMaybeCommitted,
  isRetryable,
} from './transactor.js';
