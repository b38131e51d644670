import type { KvCapabilities, KvStore, ManualClock } from '@weft/kv';

/**
 * How the conformance suite reaches a backend. Only `open` is required; every
 * optional hook enables the checks that need it, and checks whose hook is
 * missing are skipped with a printed reason.
 */
export interface KvConformanceHarness {
  /**
   * Opens a new client handle on `bucket`, creating the bucket if needed. Two
   * calls with one name must give two clients of one bucket (separate
   * connections where the backend has them).
   */
  open(bucket: string): Promise<KvStore>;
  /**
   * Opens a handle that runs no TTL sweeper, so that a passed TTL stays
   * unswept while a check looks at it. Every handle of such a check is opened
   * this way: one handle's sweeper would hide another's bug.
   */
  openUnswept?(bucket: string): Promise<KvStore>;
  /**
   * Destroys the bucket with its data and history and creates it again empty,
   * as a reset server or a lost volume would; handles opened before it are
   * only closed afterwards.
   */
  recreateBucket?(bucket: string): Promise<void>;
  /** Runs once before the suite (e.g. start a server). */
  setup?(): Promise<void>;
  /** Runs once after the suite. */
  teardown?(): Promise<void>;
  /** Removes a bucket and its data after the check that used it. */
  dropBucket?(bucket: string): Promise<void>;
  /**
   * Makes the bucket forget its change history up to its head, as retention
   * or compaction on the server would, so that watches resumed from older
   * cursors must fail with `CursorExpired`.
   */
  forgetHistory?(bucket: string, store: KvStore): Promise<void>;
  /**
   * Takes a copy of the bucket's data on the server now; the function it
   * returns puts that copy back, as a failover to a replica that missed the
   * latest writes, or a restart from an older copy, would: the server then
   * forgets writes it had acknowledged.
   */
  rewind?(bucket: string): Promise<() => Promise<void>>;
  /**
   * Counts the server-side resources held by watches on `bucket` (consumers,
   * blocked connections, registered watchers), to prove that ending a watch
   * releases them.
   */
  watchResources?(bucket: string): Promise<number>;
  /**
   * The TTL, in milliseconds, that the server itself holds for `key` as
   * its last write set it (for backends that hand TTLs to the server), or
   * `undefined` when the server holds none. With it, a check proves the
   * server never gets a shorter TTL than the caller gave (rounding to the
   * server's resolution goes up).
   */
  ttlHeld?(bucket: string, key: string): Promise<number | undefined>;
  /**
   * The manual clock the backend's TTLs run on. With it, TTL checks move time
   * by hand; without it they wait in real time with short TTLs.
   */
  clock?: ManualClock;
  /**
   * The longest documented delay between a TTL passing and its `expire` event,
   * in real milliseconds. @default 5000
   */
  expireDelayMs?: number;
  /**
   * How long a check waits for an awaited watch event (or a resource count)
   * before it fails instead of hanging. @default 20000
   */
  watchDeadlineMs?: number;
}

/** Options of {@link describeKvConformance}. */
export interface KvConformanceOptions {
  /**
   * Command sequences in the model-based run.
   * @default the `WEFT_PROPERTY_RUNS` environment variable, else 200
   */
  propertyRuns?: number | undefined;
  /**
   * fast-check seed for the model-based run, to replay a failure.
   * @default the `WEFT_SEED` environment variable, else random
   */
  seed?: number | undefined;
  /**
   * Concurrent histories recorded and checked by the linearizability check.
   * @default the `WEFT_LINEARIZABILITY_HISTORIES` environment variable, else 2000 with `WEFT_LONG=1`, else 60
   */
  linearizabilityHistories?: number | undefined;
  /** Per-check timeout in milliseconds. @default 60000 */
  timeoutMs?: number | undefined;
}

/** What a check receives: a fresh bucket of its own, and handles on it. */
export interface CheckContext {
  readonly harness: KvConformanceHarness;
  /** The fresh bucket this check runs in. */
  readonly bucket: string;
  readonly propertyRuns: number;
  readonly seed: number | undefined;
  /** How many concurrent histories the linearizability check records. */
  readonly linearizabilityHistories: number;
  /** Opens another client handle on the check's bucket; handles are closed after the check. */
  open(): Promise<KvStore>;
  /** Opens a handle through the harness's `openUnswept`; closed after the check. */
  openUnswept(): Promise<KvStore>;
  /** Prints one line, prefixed with the suite name. */
  log(message: string): void;
}

/** A precondition a check needs; a check whose precondition fails is skipped with the reason. */
export type Requirement =
  | keyof Pick<KvCapabilities, 'ttl' | 'purge' | 'expireBeforeNextWrite' | 'commit'>
  | 'forgetHistory'
  | 'rewind'
  | 'watchResources'
  | 'openUnswept'
  | 'recreateBucket'
  | 'ttlHeld';

/** One clause of the contract, checked. */
export interface ConformanceCheck {
  /** The contract clause it belongs to: `keys`, `values`, `reads`, `writes`, `ttl`, `purge`, `cas`, `watch`, `linearizability`, `model`, `bad input`. */
  readonly group: string;
  /** What a user relies on, in one sentence. */
  readonly name: string;
  readonly requires?: readonly Requirement[];
  run(context: CheckContext): Promise<void>;
}
