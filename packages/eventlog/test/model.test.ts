/**
 * Model-based property test: random sequences of appends, batches, expected
 * sequences, idempotent retries, gated appends, reads and reopens, checked
 * command by command against a plain model of the log.
 */
import { fc, test } from '@fast-check/vitest';
import { type EventLog, EventLogError, MemoryFileSystem, openEventLog, type SyncMode } from '@weft/eventlog';
import { describe, expect } from 'vitest';

const kind = 0x1001;
const entities = ['a', 'b', 'c'] as const;
const bytes = (text: string) => new TextEncoder().encode(text);
const text = (value: Uint8Array) => new TextDecoder().decode(value);

type Expectation = 'none' | 'right' | 'wrong';
type Command =
  | { op: 'append'; entity: number; payload: string; expect: Expectation; key: number | undefined; gated: boolean }
  | { op: 'batch'; events: Array<{ entity: number; payload: string }>; key: number | undefined }
  | { op: 'readEntity'; entity: number; from: number }
  | { op: 'readAll'; from: number }
  | { op: 'get'; index: number }
  | { op: 'reopen' };

const command: fc.Arbitrary<Command> = fc.oneof(
  {
    arbitrary: fc.record({
      op: fc.constant('append' as const),
      entity: fc.nat({ max: 2 }),
      payload: fc.string({ maxLength: 8 }),
      expect: fc.constantFrom<Expectation>('none', 'right', 'wrong'),
      key: fc.option(fc.nat({ max: 4 }), { nil: undefined }),
      gated: fc.boolean(),
    }),
    weight: 5,
  },
  {
    arbitrary: fc.record({
      op: fc.constant('batch' as const),
      events: fc.array(fc.record({ entity: fc.nat({ max: 2 }), payload: fc.string({ maxLength: 8 }) }), { minLength: 1, maxLength: 4 }),
      key: fc.option(fc.nat({ max: 4 }), { nil: undefined }),
    }),
    weight: 2,
  },
  {
    arbitrary: fc.record({ op: fc.constant('readEntity' as const), entity: fc.nat({ max: 2 }), from: fc.integer({ min: 1, max: 6 }) }),
    weight: 1,
  },
  { arbitrary: fc.record({ op: fc.constant('readAll' as const), from: fc.integer({ min: 1, max: 20 }) }), weight: 1 },
  { arbitrary: fc.record({ op: fc.constant('get' as const), index: fc.nat() }), weight: 1 },
  { arbitrary: fc.record({ op: fc.constant('reopen' as const) }), weight: 1 },
);

interface ModelEvent {
  readonly id: string;
  readonly entity: string;
  readonly payload: string;
  readonly sequence: number;
  readonly position: number;
}

const seed = Number(process.env.WEFT_SEED ?? Date.now() % 2 ** 31);
const runs = Number(process.env.WEFT_PROPERTY_RUNS ?? 150);
console.log(`event log model: ${runs} sequences per sync mode, seed ${seed} (replay with WEFT_SEED=${seed})`);

describe('the event log agrees with its model', () => {
  for (const sync of ['group', 'none'] as SyncMode[]) {
    test.prop([fc.array(command, { minLength: 1, maxLength: 25 })], { numRuns: runs, seed })(`sync '${sync}'`, async (commands) => {
      const fs = new MemoryFileSystem();
      // Gated appends are denied when their payload starts with "x".
      const gate = (context: { events: ReadonlyArray<{ payload: Uint8Array }> }) =>
        context.events.some((event) => text(event.payload).startsWith('x')) ? { deny: 'payload starts with x' } : undefined;
      const openLog = () => openEventLog({ dir: '/log', fs, sync, segmentBytes: 512 });
      let log: EventLog = await openLog();
      const model: ModelEvent[] = [];
      const keys = new Map<number, ModelEvent[]>();
      const sequenceOf = (entity: string) => model.filter((event) => event.entity === entity).length;
      try {
        for (const step of commands) {
          switch (step.op) {
            case 'append': {
              const entity = entities[step.entity] as string;
              const current = sequenceOf(entity);
              const options = {
                ...(step.expect === 'none' ? {} : { expectedSequence: step.expect === 'right' ? current : current + 1 }),
                ...(step.key === undefined ? {} : { idempotencyKey: `k${step.key}` }),
                ...(step.gated ? { gate } : {}),
              };
              const outcome = await log.append({ entity, kind, payload: bytes(step.payload) }, options).catch((error: unknown) => error);
              const earlier = step.key === undefined ? undefined : keys.get(step.key);
              if (earlier !== undefined) {
                expect(outcome).toMatchObject({ duplicate: true, position: earlier.at(-1)?.position });
              } else if (step.expect === 'wrong') {
                expect(EventLogError.is(outcome, 'SequenceMismatch')).toBe(true);
              } else if (step.gated && step.payload.startsWith('x')) {
                expect(EventLogError.is(outcome, 'GateDenied')).toBe(true);
              } else {
                const receipt = outcome as { events: Array<{ id: string; position: number; sequence: number }> };
                const event = {
                  id: receipt.events[0]?.id ?? '',
                  entity,
                  payload: step.payload,
                  sequence: current + 1,
                  position: model.length + 1,
                };
                expect(receipt.events[0]).toMatchObject({ position: event.position, sequence: event.sequence });
                model.push(event);
                if (step.key !== undefined) keys.set(step.key, [event]);
              }
              break;
            }
            case 'batch': {
              const earlier = step.key === undefined ? undefined : keys.get(step.key);
              const receipt = await log.appendBatch(
                step.events.map((event) => ({ entity: entities[event.entity] as string, kind, payload: bytes(event.payload) })),
                step.key === undefined ? {} : { idempotencyKey: `k${step.key}` },
              );
              if (earlier !== undefined) {
                expect(receipt.duplicate).toBe(true);
                expect(receipt.events.map((event) => event.position)).toEqual(earlier.map((event) => event.position));
                break;
              }
              const added = step.events.map((event, index) => {
                const entity = entities[event.entity] as string;
                const modelEvent = {
                  id: receipt.events[index]?.id ?? '',
                  entity,
                  payload: event.payload,
                  sequence: sequenceOf(entity) + 1,
                  position: model.length + 1,
                };
                model.push(modelEvent);
                return modelEvent;
              });
              expect(receipt.events.map((event) => [event.position, event.sequence])).toEqual(
                added.map((event) => [event.position, event.sequence]),
              );
              if (step.key !== undefined) keys.set(step.key, added);
              break;
            }
            case 'readEntity': {
              const entity = entities[step.entity] as string;
              const read: string[] = [];
              for await (const event of log.readEntity(entity, step.from)) read.push(`${event.sequence}:${text(event.payload)}`);
              expect(read).toEqual(
                model
                  .filter((event) => event.entity === entity && event.sequence >= step.from)
                  .map((event) => `${event.sequence}:${event.payload}`),
              );
              break;
            }
            case 'readAll': {
              const read: string[] = [];
              for await (const event of log.read(step.from)) read.push(`${event.position}:${event.entity}:${text(event.payload)}`);
              expect(read).toEqual(
                model.filter((event) => event.position >= step.from).map((event) => `${event.position}:${event.entity}:${event.payload}`),
              );
              break;
            }
            case 'get': {
              if (model.length === 0) break;
              const wanted = model[step.index % model.length] as ModelEvent;
              const event = await log.get(wanted.id);
              expect([event?.position, event?.entity, event && text(event.payload)]).toEqual([
                wanted.position,
                wanted.entity,
                wanted.payload,
              ]);
              break;
            }
            case 'reopen': {
              await log.close();
              log = await openLog();
              expect(log.head).toBe(model.length);
              break;
            }
          }
        }
        expect(log.head).toBe(model.length);
        expect((await log.verify()).ok).toBe(true);
      } finally {
        await log.close();
      }
    });
  }
});
