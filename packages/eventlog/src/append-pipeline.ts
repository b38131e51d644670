/**
 * The append pipeline, the log's critical section (synchronous): checks a
 * batch, answers a retried idempotency key, assigns ids, times, positions
 * and sequences, seals and hashes each payload, encodes the frames, records
 * the events in the index and queues the batch for the writer. A batch the
 * writer fails to write is undone.
 */
import { type AcceptView, type CheckedEvent, checkBatchOptions, checkEvents, checkPreconditions } from './append-checks.js';
import { encodeFrame, type FrameHeader } from './codec.js';
import type { Hashers } from './hash.js';
import { type EventId, type HybridLogicalClock, UuidV7Generator, writeUuid } from './ids.js';
import type { LogIndex } from './log-index.js';
import type { PayloadCodec, Sealed, SealInput } from './payload-codec.js';
import { isReservedKind } from './rules.js';
import { FrameArena, LazyDeferred, type PendingBatch } from './structures.js';
import type { AppendedEvent, AppendInput, AppendOptions, AppendReceipt, Gate } from './types.js';
import type { SegmentWriter } from './writer.js';

/** What the pipeline works with. */
export interface PipelineHost {
  readonly index: LogIndex;
  readonly writer: SegmentWriter;
  readonly hashers: Hashers;
  readonly hlc: HybridLogicalClock;
  readonly clock: () => number;
  readonly maxPayloadBytes: number;
  readonly gates: readonly Gate[];
  codec(): PayloadCodec;
}

type Writable<T> = { -readonly [K in keyof T]: T[K] };

/**
 * An accepted batch, queued for the writer. It can undo what accepting it
 * changed in the index (the writer calls `undo` when it cannot be written).
 */
export class AcceptedBatch implements PendingBatch {
  readonly frames: Uint8Array[] = [];
  readonly events: AppendedEvent[] = [];
  readonly firstPosition: number;
  lastPosition: number;
  bytes = 0;
  serial = 0;
  readonly written = new LazyDeferred();
  readonly #index: LogIndex;
  readonly #checked: readonly CheckedEvent[];
  readonly #idempotencyKey: string | undefined;
  /** Each event's entity hash before it. */
  readonly #previousHashes: Uint8Array[] = [];

  constructor(index: LogIndex, checked: readonly CheckedEvent[], idempotencyKey: string | undefined) {
    this.#index = index;
    this.#checked = checked;
    this.#idempotencyKey = idempotencyKey;
    this.firstPosition = index.head + 1;
    this.lastPosition = index.head;
  }

  /** Records an accepted event: its frame, what its receipt says, and its entity's hash before it. */
  add(frame: Uint8Array, event: AppendedEvent, previousHash: Uint8Array): void {
    this.frames.push(frame);
    this.bytes += frame.length;
    this.events.push(event);
    this.#previousHashes.push(previousHash);
    this.lastPosition = event.position;
  }

  undo(): void {
    const index = this.#index;
    for (let at = this.events.length - 1; at >= 0; at--) {
      const event = this.events[at] as AppendedEvent;
      const state = index.entities.get(event.entity);
      if (state !== undefined) {
        state.sequence = event.sequence - 1;
        state.lastHash = this.#previousHashes[at] as Uint8Array;
        state.positions.pop();
        // An entity this batch created goes with it.
        if (state.positions.length === 0) index.entities.delete(event.entity);
      }
      index.byId.remove(event.position);
      for (const parent of (this.#checked[at] as CheckedEvent).parents) index.children.get(parent)?.pop();
    }
    if (this.#idempotencyKey !== undefined) index.idempotency.delete(this.#idempotencyKey);
    index.head = this.firstPosition - 1;
  }
}

export class AppendPipeline {
  readonly #host: PipelineHost;
  /** Tags the ids of events appended from now on (see `EventLog.tagIds`). */
  set idTag(tag: Uint8Array | undefined) {
    this.#ids.tag = tag;
  }
  readonly #ids = new UuidV7Generator();
  /** The bytes of a caller's own event id. */
  readonly #idScratch = new Uint8Array(16);
  readonly #arena = new FrameArena();
  readonly #allocate = (size: number) => this.#arena.take(size);
  /** What the append checks read of the log (made once: appends are the hot path). */
  readonly #view: AcceptView;
  /** Reused for every event (the codec and the encoder read them and keep nothing). */
  readonly #sealInput: Writable<SealInput> = {
    id: '' as EventId,
    entity: '',
    scope: '',
    kind: 0,
    payload: new Uint8Array(0),
    reserved: false,
  };
  readonly #sealed: Sealed = { stored: new Uint8Array(0), encryption: undefined };
  readonly #header: Writable<FrameHeader> = {
    kind: 0,
    id: '' as EventId,
    time: 0n,
    position: 0,
    sequence: 0,
    batchIndex: 0,
    batchCount: 0,
    hash: new Uint8Array(0),
    entity: '',
    scope: '',
    causationId: undefined,
    correlationId: undefined,
    parents: [],
    idempotencyKey: undefined,
    encryption: undefined,
  };

  constructor(host: PipelineHost) {
    this.#host = host;
    const index = host.index;
    this.#view = {
      maxPayloadBytes: host.maxPayloadBytes,
      gates: host.gates,
      get head() {
        return index.head;
      },
      has: (id) => index.byId.has(id),
      sequenceOf: (entity) => index.sequenceOf(entity),
    };
  }

  /** Validates, runs gates and checks, assigns positions and queues the frames; a retried idempotency key gets its earlier receipt. */
  accept(inputs: readonly AppendInput[], options: AppendOptions, reserved: boolean): AcceptedBatch | AppendReceipt {
    const { index, hashers, hlc } = this.#host;
    const { idempotencyKey, label } = checkBatchOptions(inputs, options);
    if (idempotencyKey !== undefined) {
      const earlier = index.idempotency.get(idempotencyKey);
      if (earlier !== undefined) {
        return {
          events: earlier.events,
          position: earlier.events.at(-1)?.position ?? 0,
          duplicate: true,
          durable: this.#host.writer.durability.whenDurable(earlier.serial),
        };
      }
    }
    const events = checkEvents(inputs, reserved, this.#view);
    checkPreconditions(inputs, events, options, this.#view);

    // Everything below changes state; `batch.undo()` reverts all of it if the write fails.
    const codec = this.#host.codec();
    const batch = new AcceptedBatch(index, events, idempotencyKey);
    const sealInput = this.#sealInput;
    const sealed = this.#sealed;
    const header = this.#header;
    header.batchCount = events.length;
    for (let batchIndex = 0; batchIndex < events.length; batchIndex++) {
      const { input, entity, scope, parents } = events[batchIndex] as CheckedEvent;
      const position = ++index.head;
      let id: EventId;
      let idBytes: Uint8Array;
      if (input.id === undefined) {
        id = this.#ids.next(this.#host.clock());
        idBytes = this.#ids.lastBytes;
      } else {
        id = input.id;
        idBytes = this.#idScratch;
        writeUuid(id, idBytes, 0);
      }
      let time: bigint;
      if (input.time === undefined) time = hlc.tick();
      else {
        time = input.time;
        hlc.observe(time);
      }
      const entityState = index.entity(entity);
      const previousHash = entityState.lastHash;
      sealInput.id = id;
      sealInput.entity = entity;
      sealInput.scope = scope;
      sealInput.kind = input.kind;
      sealInput.payload = input.payload;
      sealInput.reserved = isReservedKind(input.kind);
      codec.seal(sealInput, sealed);
      const hash = hashers.blake3(previousHash, sealed.stored);
      const sequence = entityState.sequence + 1;
      header.kind = input.kind;
      header.id = id;
      header.time = time;
      header.position = position;
      header.sequence = sequence;
      header.batchIndex = batchIndex;
      header.hash = hash;
      header.entity = entity;
      header.scope = scope;
      header.causationId = input.causationId;
      header.correlationId = input.correlationId;
      header.parents = parents;
      header.idempotencyKey = batchIndex === 0 ? (idempotencyKey ?? label) : undefined;
      header.encryption = sealed.encryption;
      const frame = encodeFrame(header, sealed.stored, hashers.crc32c, this.#allocate, idBytes);
      entityState.sequence = sequence;
      entityState.lastHash = hash;
      entityState.positions.push(position);
      index.byId.addBytes(position, idBytes);
      for (const parent of parents) index.addChild(parent, id);
      batch.add(frame, { id, entity, position, sequence }, previousHash);
    }
    // Nothing is kept of the last event's payload and hash between appends.
    sealInput.payload = sealed.stored = header.hash = emptyBytes;
    header.encryption = sealed.encryption = undefined;
    this.#host.writer.enqueue(batch);
    if (idempotencyKey !== undefined) index.idempotency.set(idempotencyKey, { events: batch.events, serial: batch.serial });
    return batch;
  }
}

const emptyBytes = new Uint8Array(0);
