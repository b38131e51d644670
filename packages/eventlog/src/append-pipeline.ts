/**
 * The append pipeline, the log's critical section (synchronous): checks a
 * batch, answers a retried idempotency key, assigns ids, times, positions
 * and sequences, seals and hashes each payload, encodes the frames, records
 * the events in the index and queues the batch for the writer. A batch the
 * writer fails to write is undone.
 */
import { type AcceptView, checkBatchOptions, checkEvents, checkPreconditions } from './append-checks.js';
import { encodeFrame, type FrameHeader } from './codec.js';
import type { Hashers } from './hash.js';
import { type EventId, type HybridLogicalClock, UuidV7Generator, writeUuid } from './ids.js';
import type { LogIndex } from './log-index.js';
import type { PayloadCodec } from './payload-codec.js';
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

/** An accepted batch, queued for the writer. */
export type AcceptedBatch = PendingBatch & { readonly events: AppendedEvent[] };

export class AppendPipeline {
  readonly #host: PipelineHost;
  readonly #ids = new UuidV7Generator();
  /** The bytes of a caller's own event id. */
  readonly #idScratch = new Uint8Array(16);
  readonly #arena = new FrameArena();
  readonly #allocate = (size: number) => this.#arena.take(size);
  /** What the append checks read of the log (made once: appends are the hot path). */
  readonly #view: AcceptView;

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

    // Everything below changes state; `undo` reverts all of it if the write fails.
    const codec = this.#host.codec();
    const frames: Uint8Array[] = [];
    const appended: AppendedEvent[] = [];
    const previousHashes: Uint8Array[] = [];
    const createdEntities: string[] = [];
    const firstPosition = index.head + 1;
    let bytes = 0;
    for (let batchIndex = 0; batchIndex < events.length; batchIndex++) {
      const { input, entity, scope, parents } = events[batchIndex] as (typeof events)[number];
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
      const { state: entityState, created } = index.entity(entity);
      if (created) createdEntities.push(entity);
      const previousHash = entityState.lastHash;
      const sealed = codec.seal({ id, entity, scope, kind: input.kind, payload: input.payload, reserved: isReservedKind(input.kind) });
      const hash = hashers.blake3(previousHash, sealed.stored);
      const sequence = entityState.sequence + 1;
      const header: FrameHeader = {
        kind: input.kind,
        id,
        time,
        position,
        sequence,
        batchIndex,
        batchCount: events.length,
        hash,
        entity,
        scope,
        causationId: input.causationId,
        correlationId: input.correlationId,
        parents,
        idempotencyKey: batchIndex === 0 ? (idempotencyKey ?? label) : undefined,
        encryption: sealed.encryption,
      };
      const frame = encodeFrame(header, sealed.stored, hashers.crc32c, this.#allocate, idBytes);
      frames.push(frame);
      bytes += frame.length;
      entityState.sequence = sequence;
      entityState.lastHash = hash;
      entityState.positions.push(position);
      index.byId.addBytes(position, idBytes);
      for (const parent of parents) index.addChild(parent, id);
      previousHashes.push(previousHash);
      appended.push({ id, entity, position, sequence });
    }
    const undo = () => {
      for (let at = appended.length - 1; at >= 0; at--) {
        const event = appended[at] as AppendedEvent;
        const state = index.entities.get(event.entity);
        if (state !== undefined) {
          state.sequence = event.sequence - 1;
          state.lastHash = previousHashes[at] as Uint8Array;
          state.positions.pop();
        }
        index.byId.remove(event.position);
        for (const parent of (events[at] as (typeof events)[number]).parents) index.children.get(parent)?.pop();
      }
      for (const entity of createdEntities) index.entities.delete(entity);
      if (idempotencyKey !== undefined) index.idempotency.delete(idempotencyKey);
      index.head = firstPosition - 1;
    };
    const batch: AcceptedBatch = {
      frames,
      firstPosition,
      lastPosition: index.head,
      bytes,
      undo,
      written: new LazyDeferred(),
      serial: 0,
      events: appended,
    };
    this.#host.writer.enqueue(batch);
    if (idempotencyKey !== undefined) index.idempotency.set(idempotencyKey, { events: appended, serial: batch.serial });
    return batch;
  }
}
