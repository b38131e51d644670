import { KvStoreFront } from '../backend/store.js';
import type { WatchCursor } from '../types.js';
import { assertBucketName } from '../validate.js';
import { backend, type MemoryBucketOptions } from './bucket.js';
import { memoryCursors } from './cursors.js';
import { MemoryDriver } from './driver.js';
import { createMemoryKvServer, type MemoryKvServer } from './server.js';

export type { MemoryBucketOptions } from './bucket.js';

/** Options of {@link openMemoryKv}. */
export interface MemoryKvOptions extends MemoryBucketOptions {
  /** The bucket name. @default 'default' */
  readonly bucket?: string | undefined;
  /**
   * The in-memory server holding the bucket. Handles opened on the same server
   * and bucket behave like several clients of one server. @default a new private server
   */
  readonly server?: MemoryKvServer | undefined;
}

/**
 * Opens a handle on an in-memory bucket: the reference implementation of the
 * contract and the embedded default. Nothing survives the process.
 *
 * @throws {KvError} `InvalidArgument` for a bad option
 */
export async function openMemoryKv(options: MemoryKvOptions = {}): Promise<MemoryKvStore> {
  const server = options.server ?? createMemoryKvServer();
  const bucketName = options.bucket ?? 'default';
  assertBucketName(bucketName, backend);
  return new MemoryKvStore(server, new MemoryDriver(bucketName, server.bucket(bucketName, options)));
}

/** A handle on a memory bucket. See {@link openMemoryKv}. */
export class MemoryKvStore extends KvStoreFront<number> {
  /** The server this handle's bucket lives on. */
  readonly server: MemoryKvServer;
  readonly #driver: MemoryDriver;

  /** @internal use {@link openMemoryKv} */
  constructor(server: MemoryKvServer, driver: MemoryDriver) {
    super(driver);
    this.server = server;
    this.#driver = driver;
  }

  /** The cursor of the latest change in the bucket (the head); `0` for an empty bucket. */
  headCursor(): WatchCursor {
    this.assertOpen();
    return memoryCursors.format(this.#driver.head, '');
  }
}
