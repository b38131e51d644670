/**
 * What an open log knows about its events in memory: where each position
 * lives, event ids, each entity's sequence, last hash and positions, causal
 * children and idempotency receipts. Rebuilt at open from the segments; kept current by appends.
 */
import type { FrameHeader } from './codec.js';
import { IdIndex } from './id-index.js';
import type { EventId } from './ids.js';
import { labelPrefix } from './rules.js';
import { type EntityState, LocationIndex } from './structures.js';
import type { AppendedEvent } from './types.js';

export const zeroHash = new Uint8Array(32);

/** What an idempotent batch answers to a retry. */
export interface IdempotentReceipt {
  readonly events: AppendedEvent[];
  /** The batch's serial (0 for batches found at open, all durable). */
  readonly serial: number;
}

export class LogIndex {
  readonly locations = new LocationIndex();
  readonly byId = new IdIndex();
  readonly entities = new Map<string, EntityState>();
  readonly children = new Map<string, EventId[]>();
  readonly idempotency = new Map<string, IdempotentReceipt>();
  /** Position of the last accepted event. */
  head = 0;
  /** During recovery: the idempotent batch whose later frames are being read. */
  #recoveringReceipt: { events: AppendedEvent[]; serial: number } | undefined;

  sequenceOf(entity: string): number {
    return this.entities.get(entity)?.sequence ?? 0;
  }

  /** The entity's state, made when it has none yet (then without positions). */
  entity(entity: string): EntityState {
    let state = this.entities.get(entity);
    if (state === undefined) {
      state = { sequence: 0, lastHash: zeroHash, positions: [] };
      this.entities.set(entity, state);
    }
    return state;
  }

  addChild(parent: string, child: EventId): void {
    const children = this.children.get(parent);
    if (children === undefined) this.children.set(parent, [child]);
    else children.push(child);
  }

  /** Parent ids referenced by events in the log that are not in the log themselves. */
  missingParents(): EventId[] {
    return [...this.children.keys()].filter((parent) => !this.byId.has(parent)) as EventId[];
  }

  /** A frame found in a segment (at open, or by a read-only refresh). */
  indexFrame(header: FrameHeader, segmentIndex: number, offset: number, size: number): void {
    const position = header.position;
    this.head = position;
    this.locations.set(position, segmentIndex, offset, size);
    this.byId.add(position, header.id);
    const state = this.entity(header.entity);
    state.sequence = header.sequence;
    state.lastHash = header.hash;
    state.positions.push(position);
    for (const parent of header.parents) this.addChild(parent, header.id);
    const appended = { id: header.id, entity: header.entity, position, sequence: header.sequence };
    if (header.batchIndex === 0) {
      this.#recoveringReceipt = undefined;
      if (header.idempotencyKey !== undefined && !header.idempotencyKey.startsWith(labelPrefix)) {
        this.#recoveringReceipt = { events: [appended], serial: 0 };
        this.idempotency.set(header.idempotencyKey, this.#recoveringReceipt);
      }
    } else {
      // Later frames of an idempotent batch join the receipt of its first frame.
      this.#recoveringReceipt?.events.push(appended);
    }
  }
}
