/**
 * The driver a backend writes: only what is native to its server. Everything
 * the contract derives from these primitives (validation, closed state,
 * `keys()` over a listing, the TTL visibility of listings, disposal and the
 * watch protocol) lives once in {@link defineKvStore} and the watch loop.
 */

import type { KvError } from '../errors.js';
import type { KvCapabilities, KvEntry, KvRecord, Version, WatchCursor } from '../types.js';
import type { Deadlines } from './deadline.js';

/** One write with its precondition, already validated (key, value, TTL) by the store front. */
export type KvMutation =
  | { readonly kind: 'put'; readonly key: string; readonly value: Uint8Array }
  | { readonly kind: 'putWithTtl'; readonly key: string; readonly value: Uint8Array; readonly ttlMs: number }
  | { readonly kind: 'create'; readonly key: string; readonly value: Uint8Array }
  | { readonly kind: 'update'; readonly key: string; readonly value: Uint8Array; readonly expected: Version }
  | { readonly kind: 'delete'; readonly key: string }
  | { readonly kind: 'deleteWithVersion'; readonly key: string; readonly expected: Version }
  | { readonly kind: 'purge'; readonly key: string };

/** The mutations a commit may carry: every kind but purge. */
export type KvCommitMutation = Exclude<KvMutation, { readonly kind: 'purge' }>;

/** The kinds of {@link KvMutation}, which are also the names of the store's write methods. */
export type KvMutationKind = KvMutation['kind'];

/** A cursor taken apart: the backend's native position and the bucket incarnation it belongs to. */
export interface ParsedCursor<Position> {
  readonly position: Position;
  /** Identifies one incarnation of the bucket's data; `''` for a backend whose positions are never reused. */
  readonly epoch: string;
}

/** How a backend spells its cursors. */
export interface CursorCodec<Position> {
  /**
   * Parses a cursor of this backend.
   *
   * @throws {KvError} `InvalidArgument` for anything else
   */
  parse(cursor: unknown): ParsedCursor<Position>;
  /** The cursor of `position` in the incarnation `epoch`. */
  format(position: Position, epoch: string): WatchCursor;
  /** Orders two positions of one bucket: negative, zero or positive. */
  compare(a: Position, b: Position): number;
}

/** What a watch asks its driver for. */
export interface ChangeRequest<Position> {
  /**
   * Without it: first the live state (a listing), then the changes after it.
   * With it: the changes after this position.
   */
  readonly from: Position | undefined;
  /** Whole-token prefixes the watch wants; drivers may filter natively, the loop filters again. */
  readonly prefixes: readonly string[] | undefined;
  /** Aborted when the watch ends (break, the caller's signal, or close): stop and release server resources. */
  readonly signal: AbortSignal;
}

/**
 * One item of a driver's change feed, in cursor order.
 *
 * - `change`: a record of the listing or a change of the log. Positions
 *   strictly increase, from after `from` when resuming; a driver that
 *   restarts its reader skips what it already delivered (a feed that goes
 *   back fails the watch with `OperationFailed`).
 * - `bounds`: the bucket's head and horizon as read by the driver, and the
 *   position it is reading after. The loop fails the watch with
 *   `CursorExpired` when that position is below the horizon or past the
 *   head, when the change at that position is `lost` (the server no longer
 *   has a change it handed out: it forgot acknowledged writes), or when the
 *   epoch differs from the watch's. The first bounds with a
 *   `head` fixes where `synced` falls if the feed never reports `through`.
 * - `through`: every change up to `position` has been delivered (the feed
 *   is caught up, or the listing is complete as of `position`).
 */
export type ChangeFeedItem<Position> =
  | {
      readonly type: 'change';
      readonly position: Position;
      readonly key: string;
      readonly op: 'put' | 'delete' | 'purge' | 'expire';
      /** A put's value, owned by the receiver (copied out of any shared buffer). */
      readonly value?: Uint8Array;
      /** The version of a put, delete or purge. */
      readonly version?: Version;
      /** A put's TTL in epoch milliseconds, when it has one and the driver knows it; a lapsed put is left out of listings. */
      readonly expiresAt?: number;
    }
  | {
      readonly type: 'bounds';
      readonly epoch: string;
      /** The position the driver reads after; `undefined` while it lists. */
      readonly reading?: Position | undefined;
      readonly head?: Position | undefined;
      readonly horizon?: Position | undefined;
      /**
       * The change at `reading` is gone although it is above the horizon:
       * the server lost writes it had acknowledged (a failover to a replica
       * that lacked them, a restart from an older copy of its data).
       */
      readonly lost?: boolean | undefined;
    }
  | { readonly type: 'through'; readonly position: Position };

/**
 * The native primitives of one bucket handle. A driver never validates what
 * the front already did (keys, values, TTLs, prefixes, closed state) and
 * throws only {@link KvError}s.
 */
export interface KvDriver<Position> {
  /** The backend's name, e.g. `redis`. */
  readonly backend: string;
  readonly bucket: string;
  readonly capabilities: KvCapabilities;
  readonly cursors: CursorCodec<Position>;
  /**
   * The deadlines of this handle's network steps. With them, the store front
   * gives up on a read, write or listing page that has not settled in time
   * (`Timeout` for reads, `Indeterminate` for writes), and the driver's
   * change feed bounds each of its own steps with the same object. Without
   * them (an in-process backend) nothing waits on a server.
   */
  readonly deadlines?: Deadlines;
  /** The clock TTLs run on, for hiding a lapsed TTL in a watch's listing. @default Date.now */
  now?(): number;
  /** The live value of `key` (a lapsed TTL is absent). */
  get(key: string): Promise<KvEntry | undefined>;
  /**
   * The live values of `keys` in their order, where the backend reads many
   * keys in fewer requests than one each; the front reads them one by one
   * (all at once) without it. `keys` are valid and at most
   * `maxGetManyKeys`.
   */
  getMany?(keys: readonly string[]): Promise<(KvEntry | undefined)[]>;
  /** The latest record of `key`, tombstones included (a lapsed TTL is absent). */
  entry(key: string): Promise<KvRecord | undefined>;
  /**
   * The live entries under `prefix`, in pages read natively. With `values`
   * false the entries' values may be empty (for `keys()`).
   */
  list(prefix: string | undefined, options: { readonly values: boolean }): AsyncIterable<KvEntry>;
  /** Applies one mutation atomically with its precondition; returns the new version. */
  mutate(mutation: KvMutation): Promise<Version>;
  /**
   * Applies every mutation or none, in one step (see `KvCommit`): required
   * when `capabilities.commit` is not false. The front has validated every
   * key, value and TTL, that no key repeats and that the limits hold; a
   * failed precondition throws the single-key error (`RevisionMismatch`,
   * `AlreadyExists`) naming that mutation's key, with nothing written.
   */
  commit?(mutations: readonly KvCommitMutation[]): Promise<Version[]>;
  /**
   * The change feed of one watch; see {@link ChangeFeedItem}. A feed may
   * yield several items at once as an array (what one read of the server
   * returned), which saves a step of the async iteration per item.
   */
  changes(request: ChangeRequest<Position>): AsyncIterable<ChangeFeedItem<Position> | readonly ChangeFeedItem<Position>[]>;
  /**
   * Why this handle cannot honour writes of `kind`, or `undefined` when it
   * can; the front then throws `Unsupported` before any effect.
   */
  refusal?(kind: KvMutationKind): string | undefined;
  /** Turns a failure that escaped a feed into a typed error. @default `OperationFailed` around it */
  toKvError?(error: unknown, operation: string): KvError;
  /** Releases what the driver opened itself (not a caller-owned client). Called once. */
  close(): Promise<void>;
}
