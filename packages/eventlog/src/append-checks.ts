/**
 * The checks of an append, before anything changes: the batch's options
 * (idempotency key or label), each event's fields, expected sequences and
 * gates. Pure functions over a view of the log: a failure throws and the
 * log is untouched.
 */

import { utf8Length } from '@weft/common';
import { maxNameBytes, maxParents } from './codec.js';
import { EventLogError, EventLogErrorCode } from './errors.js';
import { type EventId, isUuid } from './ids.js';
import { checkName, invalidArgument, isReservedKind, labelPrefix } from './rules.js';
import type { AppendInput, AppendOptions, Gate, GateContext } from './types.js';
import { describeReason } from './util.js';

/** What the checks read of the log. */
export interface AcceptView {
  readonly maxPayloadBytes: number;
  readonly gates: readonly Gate[];
  readonly head: number;
  has(id: string): boolean;
  sequenceOf(entity: string): number;
}

/** An event whose fields passed. */
export interface CheckedEvent {
  readonly input: AppendInput;
  readonly entity: string;
  readonly scope: string;
  readonly parents: readonly EventId[];
}

const neitherKeyNorLabel = Object.freeze({ idempotencyKey: undefined, label: undefined });
/** The parents of an event without causal parents (shared: nothing changes it). */
const noParents: readonly EventId[] = Object.freeze([]);

/**
 * The batch's size, and its idempotency key or label (stored as the frame's key).
 *
 * @throws {EventLogError} `InvalidArgument`
 */
export function checkBatchOptions(
  inputs: readonly AppendInput[],
  options: AppendOptions,
): { idempotencyKey: string | undefined; label: string | undefined } {
  if (!Array.isArray(inputs) || inputs.length === 0) throw invalidArgument('an append needs at least one event');
  if (inputs.length > 0xffff) throw invalidArgument(`a batch holds at most 65535 events, got ${inputs.length}`);
  if (options.idempotencyKey === undefined && options.label === undefined) return neitherKeyNorLabel;
  const idempotencyKey = options.idempotencyKey === undefined ? undefined : checkName(options.idempotencyKey, 'idempotencyKey');
  if (idempotencyKey?.startsWith(labelPrefix) === true) throw invalidArgument(`an idempotency key must not start with "${labelPrefix}"`);
  const label = options.label === undefined ? undefined : `${labelPrefix}${checkName(options.label, 'label')}`;
  if (label !== undefined && idempotencyKey !== undefined) throw invalidArgument('a batch takes a label or an idempotency key, not both');
  if (label !== undefined && utf8Length(label) > maxNameBytes)
    throw invalidArgument(`a label is at most ${maxNameBytes - labelPrefix.length} bytes`);
  return { idempotencyKey, label };
}

/** Checks each event's fields. @throws {EventLogError} `InvalidArgument` */
export function checkEvents(inputs: readonly AppendInput[], reserved: boolean, view: AcceptView): CheckedEvent[] {
  let seen: Set<string> | undefined;
  return inputs.map((input) => {
    if (typeof input !== 'object' || input === null) throw invalidArgument('each event must be an object');
    const entity = checkName(input.entity, 'entity');
    const scope = input.scope === undefined ? entity : checkName(input.scope, 'scope');
    if (!Number.isInteger(input.kind) || input.kind < 0 || input.kind > 0xffff)
      throw invalidArgument(`kind must be a u16, got ${String(input.kind)}`);
    if (!reserved && isReservedKind(input.kind)) {
      throw invalidArgument(`kind 0x${input.kind.toString(16)} is in a category reserved for the log (0x0 and 0xD)`);
    }
    if (!(input.payload instanceof Uint8Array)) throw invalidArgument('payload must be a Uint8Array');
    if (input.payload.length > view.maxPayloadBytes) {
      throw invalidArgument(`payload of ${input.payload.length} bytes exceeds maxPayloadBytes (${view.maxPayloadBytes})`);
    }
    if (input.id !== undefined && !isUuid(input.id)) throw invalidArgument('id must be a lowercase UUID string');
    if (input.causationId !== undefined && !isUuid(input.causationId)) throw invalidArgument('causationId must be a lowercase UUID string');
    if (input.correlationId !== undefined && !isUuid(input.correlationId)) {
      throw invalidArgument('correlationId must be a lowercase UUID string');
    }
    const parents = input.parents ?? noParents;
    if (!Array.isArray(parents) || parents.length > maxParents)
      throw invalidArgument(`parents must be an array of at most ${maxParents} ids`);
    for (const parent of parents) if (!isUuid(parent)) throw invalidArgument('every parent must be a lowercase UUID string');
    if (input.time !== undefined && (typeof input.time !== 'bigint' || input.time < 0n || input.time >= 2n ** 64n)) {
      throw invalidArgument('time must be a u64 bigint');
    }
    if (input.id !== undefined) {
      seen ??= new Set<string>();
      if (view.has(input.id) || seen.has(input.id)) throw invalidArgument(`event id ${input.id} is already in the log`);
      seen.add(input.id);
    }
    return { input, entity, scope, parents };
  });
}

/** Checks expected sequences, then runs the gates. @throws {EventLogError} `SequenceMismatch`, `GateDenied` */
export function checkPreconditions(
  inputs: readonly AppendInput[],
  events: readonly CheckedEvent[],
  options: AppendOptions,
  view: AcceptView,
): void {
  // Expected sequences are checked against the state before this append.
  const expected = options.expectedSequence;
  if (expected !== undefined) {
    const distinct = [...new Set(events.map((event) => event.entity))];
    for (const entity of distinct) {
      const wanted = typeof expected === 'number' ? expected : expected[entity];
      if (wanted === undefined) continue;
      const current = view.sequenceOf(entity);
      if (current !== wanted) {
        throw new EventLogError(EventLogErrorCode.SequenceMismatch, `entity '${entity}' is at sequence ${current}, expected ${wanted}`, {
          reason: { entity, expected: wanted, actual: current },
        });
      }
    }
  }
  const gates = options.gate === undefined ? view.gates : [...view.gates, options.gate];
  if (gates.length > 0) {
    const context: GateContext = {
      events: inputs,
      sequenceOf: (entity) => view.sequenceOf(entity),
      has: (id) => view.has(id),
      head: view.head,
    };
    for (const gate of gates) {
      const verdict = gate(context);
      if (verdict !== undefined && 'deny' in verdict) {
        throw new EventLogError(EventLogErrorCode.GateDenied, `a gate denied the append: ${describeReason(verdict.deny)}`, {
          reason: verdict.deny,
        });
      }
    }
  }
}
