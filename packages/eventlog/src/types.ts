import type { EventId } from './ids.js';

/**
 * When appends become durable.
 * - `always`: every append is written and fsynced on its own before it resolves.
 * - `group`: appends arriving while an fsync runs join the next one (group commit).
 * - `interval`: appends are written at once and fsynced every `syncIntervalMs`.
 * - `none`: appends are buffered and written soon, fsynced only by `flush()` and `close()`.
 */
export type SyncMode = 'always' | 'group' | 'interval' | 'none';

/** One event to append. */
export interface AppendInput {
  /** The stream the event belongs to: per-entity sequence and hash chain. 1-1024 UTF-8 bytes, no control characters. */
  readonly entity: string;
  /** The isolation and key scope. @default the entity */
  readonly scope?: string | undefined;
  /** u16: 4-bit category, 12-bit type. Categories 0x0 and 0xD are reserved for the log itself. */
  readonly kind: number;
  readonly payload: Uint8Array;
  /** A caller-chosen id (e.g. when importing); otherwise a new UUIDv7. */
  readonly id?: EventId | undefined;
  readonly causationId?: EventId | undefined;
  readonly correlationId?: EventId | undefined;
  /** Causal parents: events this one follows from. */
  readonly parents?: readonly EventId[] | undefined;
  /**
   * The event's hybrid-logical-clock time, when importing an event made
   * elsewhere (the log's clock then moves past it); otherwise the log's clock ticks.
   */
  readonly time?: bigint | undefined;
}

/** What a gate sees inside the writer's critical section. */
export interface GateContext {
  /** The events of this append, in order. */
  readonly events: readonly AppendInput[];
  /** The entity's current sequence (0 for a new entity), including appends accepted before this one. */
  sequenceOf(entity: string): number;
  /** Whether an event id is already in the log. */
  has(id: EventId): boolean;
  /** The log's head position before this append. */
  readonly head: number;
}

/** A gate's answer: `undefined` or `{ allow: true }` lets the append through; `{ deny }` stops it. */
export type GateVerdict = undefined | { readonly allow: true } | { readonly deny: unknown };

/** A synchronous predicate run inside the writer's critical section. */
export type Gate = (context: GateContext) => GateVerdict;

/** Options of one append. */
export interface AppendOptions {
  /**
   * The sequence each entity must be at (0: the entity has no events yet).
   * A number applies to the entity of a single append, or to every entity of a batch.
   */
  readonly expectedSequence?: number | Readonly<Record<string, number>> | undefined;
  /** A retry with the same key returns the original receipt and writes nothing. */
  readonly idempotencyKey?: string | undefined;
  /**
   * A label stored with the batch (on its first event, read back as
   * `LogEvent.label`): metadata a layer above the log finds again after a
   * crash, such as which batches it imported. Unlike an idempotency key it
   * deduplicates nothing and the log keeps nothing of it in memory. Not
   * together with `idempotencyKey`.
   */
  readonly label?: string | undefined;
  /** A gate for this append only, run after the log's own gates. */
  readonly gate?: Gate | undefined;
}

/** Where one appended event landed. */
export interface AppendedEvent {
  readonly id: EventId;
  readonly entity: string;
  readonly position: number;
  readonly sequence: number;
}

/** What an append returns once it is accepted (in the log, readable). */
export interface AppendReceipt {
  readonly events: readonly AppendedEvent[];
  /** Position of the last event of the append. */
  readonly position: number;
  /** True when an idempotency key matched an earlier append and nothing was written. */
  readonly duplicate: boolean;
  /** Resolves once the append is durable (fsynced); rejects if that failed. */
  readonly durable: Promise<void>;
}

/** An event as read back. */
export interface LogEvent {
  readonly id: EventId;
  readonly entity: string;
  readonly scope: string;
  readonly kind: number;
  /** Hybrid-logical-clock timestamp: wall-clock ms << 16 | logical counter. */
  readonly time: bigint;
  /** Global position, from 1. */
  readonly position: number;
  /** Per-entity sequence, from 1. */
  readonly sequence: number;
  readonly causationId: EventId | undefined;
  readonly correlationId: EventId | undefined;
  readonly parents: readonly EventId[];
  readonly idempotencyKey: string | undefined;
  /** The batch's label, on the first event of a labelled batch. */
  readonly label: string | undefined;
  /**
   * blake3(previous hash of the entity ‖ stored payload bytes), 32 bytes. Like
   * `storedPayload` and a plaintext `payload`, a view of the buffer the frame
   * was read into, shared with other events: copy it to keep it.
   */
  readonly hash: Uint8Array;
  /** The payload as stored (ciphertext when encrypted); a view of the read buffer (see `hash`). */
  readonly storedPayload: Uint8Array;
  /**
   * The payload for the reader: plaintext, or empty when `disposition` is `shredded` or `sealed`.
   * Plaintext stored as is is a view of the read buffer (see `hash`): `payload.slice()` what you keep.
   */
  readonly payload: Uint8Array;
  /**
   * `plain`: stored as is; `decrypted`: opened with its key; `shredded`: its key was destroyed;
   * `sealed`: encrypted and not opened: the log was opened without its keyset, or read with
   * `{ payloads: false }` (the ciphertext is in `storedPayload`).
   */
  readonly disposition: 'plain' | 'decrypted' | 'shredded' | 'sealed';
}

/** An item of a subscription. */
export type SubscriptionItem =
  | { readonly type: 'event'; readonly event: LogEvent }
  | { readonly type: 'caughtUp'; readonly position: number };

/** The result of a causal walk. */
export interface CausalWalk {
  /** The events reached, in position order. */
  readonly events: readonly LogEvent[];
  /** Parent ids referenced but not in the log. */
  readonly missing: readonly EventId[];
}

/** The outcome of {@link EventLog.verify}. */
export type VerifyResult =
  | { readonly ok: true; readonly events: number; readonly segments: number }
  | {
      readonly ok: false;
      readonly events: number;
      readonly segment: string;
      readonly offset: number;
      readonly position: number | undefined;
      readonly problem: string;
    };
