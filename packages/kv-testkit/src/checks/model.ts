import { KvError, type KvStore, type ManualClock, type Version } from '@weft/kv';
import fc from 'fast-check';
import { expect } from 'vitest';
import type { ConformanceCheck } from '../harness.js';
import { bytes, drain, text } from '../helpers.js';
import { check } from './contract.js';

/** The suffixes a run's keys are drawn from: few enough to collide, shaped to test whole-token prefixes. */
const keySuffixes = ['a', 'a.b', 'a.b.c', 'ab', 'b', 'b.a'] as const;
const prefixSuffixes = [undefined, 'a', 'a.b', 'b'] as const;

type Which = 'current' | 'stale';
type Command =
  | { readonly op: 'put' | 'create'; readonly key: number; readonly value: string }
  | { readonly op: 'update'; readonly key: number; readonly value: string; readonly which: Which }
  | { readonly op: 'delete' | 'purge' | 'get' | 'entry'; readonly key: number }
  | { readonly op: 'deleteWithVersion'; readonly key: number; readonly which: Which }
  | { readonly op: 'putWithTtl'; readonly key: number; readonly value: string; readonly ttl: number }
  | { readonly op: 'keys' | 'scan'; readonly prefix: number }
  | { readonly op: 'advance'; readonly ms: number };

interface ModelRecord {
  readonly op: 'put' | 'delete' | 'purge';
  readonly value: string | undefined;
  readonly version: Version;
  readonly expiresAt: number | undefined;
}

/** The contract as a plain map: what every backend must agree with, command by command. */
class KvModel {
  readonly records = new Map<string, ModelRecord>();
  readonly versions = new Map<string, Version[]>();
  constructor(readonly clock: ManualClock | undefined) {}

  now(): number {
    return this.clock?.now() ?? 0;
  }

  current(key: string): ModelRecord | undefined {
    const record = this.records.get(key);
    if (record?.expiresAt !== undefined && this.now() >= record.expiresAt) return undefined;
    return record;
  }

  live(key: string): ModelRecord | undefined {
    const record = this.current(key);
    return record?.op === 'put' ? record : undefined;
  }

  liveKeys(prefix: string): string[] {
    return [...this.records.keys()]
      .filter((key) => (key === prefix || key.startsWith(`${prefix}.`)) && this.live(key) !== undefined)
      .sort();
  }

  record(key: string, op: ModelRecord['op'], value: string | undefined, version: Version, expiresAt?: number): void {
    const seen = this.versions.get(key) ?? [];
    expect(seen, `version ${version} of ${key} was already used`).not.toContain(version);
    this.versions.set(key, [...seen, version]);
    this.records.set(key, { op, value, version, expiresAt });
  }

  /** A version to pass as `expected`: the live one, or one that must not match. */
  expected(key: string, which: Which): Version | undefined {
    const live = this.live(key)?.version;
    if (which === 'current' && live !== undefined) return live;
    const stale = (this.versions.get(key) ?? []).filter((version) => version !== live);
    if (stale.length > 0) return stale[stale.length - 1];
    for (const [otherKey, versions] of this.versions) if (otherKey !== key && versions.length > 0) return versions[0];
    return undefined;
  }
}

function commandArbitrary(ttl: boolean, purge: boolean, manualClock: boolean): fc.Arbitrary<Command> {
  const key = fc.nat({ max: keySuffixes.length - 1 });
  const value = fc.string({ maxLength: 6 });
  const which = fc.constantFrom<Which>('current', 'current', 'stale');
  const options: Array<fc.Arbitrary<Command>> = [
    fc.record({ op: fc.constant('put' as const), key, value }),
    fc.record({ op: fc.constant('create' as const), key, value }),
    fc.record({ op: fc.constant('update' as const), key, value, which }),
    fc.record({ op: fc.constant('delete' as const), key }),
    fc.record({ op: fc.constant('deleteWithVersion' as const), key, which }),
    fc.record({ op: fc.constantFrom('get' as const, 'entry' as const), key }),
    fc.record({ op: fc.constantFrom('keys' as const, 'scan' as const), prefix: fc.nat({ max: prefixSuffixes.length - 1 }) }),
  ];
  if (purge) options.push(fc.record({ op: fc.constant('purge' as const), key }));
  if (ttl) {
    // Without a manual clock the TTL is long enough never to pass during a run.
    const ttlMs = manualClock ? fc.constantFrom(10, 50, 100) : fc.constant(3_600_000);
    options.push(fc.record({ op: fc.constant('putWithTtl' as const), key, value, ttl: ttlMs }));
    if (manualClock) options.push(fc.record({ op: fc.constant('advance' as const), ms: fc.constantFrom(1, 9, 10, 40, 120) }));
  }
  return fc.oneof(...options);
}

async function outcome<T>(action: () => Promise<T>): Promise<{ ok: true; value: T } | { ok: false; code: string }> {
  try {
    return { ok: true, value: await action() };
  } catch (error) {
    if (error instanceof KvError) return { ok: false, code: error.code };
    throw error;
  }
}

async function checkListing(store: KvStore, model: KvModel, namespace: string, op: 'keys' | 'scan', prefixIndex: number): Promise<void> {
  const suffix = prefixSuffixes[prefixIndex];
  const prefix = suffix === undefined ? namespace : `${namespace}.${suffix}`;
  const expected = model.liveKeys(prefix);
  if (op === 'keys') expect((await drain(store.keys(prefix))).sort(), `keys(${prefix})`).toEqual(expected);
  else {
    const entries = (await drain(store.scan(prefix))).sort((a, b) => (a.key < b.key ? -1 : 1));
    expect(
      entries.map((entry) => [entry.key, text(entry.value), entry.version]),
      `scan(${prefix})`,
    ).toEqual(expected.map((key) => [key, model.live(key)?.value, model.live(key)?.version]));
  }
}

async function runCommand(
  store: KvStore,
  model: KvModel,
  namespace: string,
  command: Command,
  clock: ManualClock | undefined,
): Promise<void> {
  if (command.op === 'advance') {
    clock?.advance(command.ms);
    return;
  }
  if ('prefix' in command) {
    return checkListing(store, model, namespace, command.op, command.prefix);
  }
  const key = `${namespace}.${keySuffixes[command.key]}`;
  const label = `${command.op}(${key})`;
  switch (command.op) {
    case 'get': {
      const read = await store.get(key);
      const live = model.live(key);
      expect(read === undefined ? undefined : [text(read.value), read.version], label).toEqual(
        live === undefined ? undefined : [live.value, live.version],
      );
      return;
    }
    case 'entry': {
      const read = await store.entry(key);
      const current = model.current(key);
      expect(read === undefined ? undefined : [read.op, read.op === 'put' ? text(read.value) : undefined, read.version], label).toEqual(
        current === undefined ? undefined : [current.op, current.value, current.version],
      );
      return;
    }
    case 'put':
    case 'putWithTtl': {
      const ttl = command.op === 'putWithTtl' ? command.ttl : undefined;
      const version =
        ttl === undefined ? await store.put(key, bytes(command.value)) : await store.putWithTtl(key, bytes(command.value), ttl);
      model.record(key, 'put', command.value, version, ttl === undefined ? undefined : model.now() + ttl);
      return;
    }
    case 'create': {
      const result = await outcome(() => store.create(key, bytes(command.value)));
      if (model.live(key) !== undefined) expect(result, label).toEqual({ ok: false, code: 'AlreadyExists' });
      else {
        expect(result.ok, `${label}: ${JSON.stringify(result)}`).toBe(true);
        if (result.ok) model.record(key, 'put', command.value, result.value);
      }
      return;
    }
    case 'update':
    case 'deleteWithVersion': {
      const expected = model.expected(key, command.which);
      if (expected === undefined) return;
      const matches = model.live(key)?.version === expected;
      const result = await outcome(() =>
        command.op === 'update' ? store.update(key, bytes(command.value), expected) : store.deleteWithVersion(key, expected),
      );
      if (!matches) expect(result, `${label} expecting ${expected}`).toEqual({ ok: false, code: 'RevisionMismatch' });
      else {
        expect(result.ok, `${label} expecting ${expected}: ${JSON.stringify(result)}`).toBe(true);
        if (result.ok) {
          if (command.op === 'update') model.record(key, 'put', command.value, result.value);
          else model.record(key, 'delete', undefined, result.value);
        }
      }
      return;
    }
    case 'delete':
      model.record(key, 'delete', undefined, await store.delete(key));
      return;
    case 'purge':
      model.record(key, 'purge', undefined, await store.purge(key));
      return;
  }
}

function formatCommand(command: Command): string {
  const { op, ...rest } = command;
  return `${op}${JSON.stringify(rest)}`;
}

let namespaceCounter = 0;

export const modelChecks: ConformanceCheck[] = [
  check('model', 'random command sequences agree with the reference model, command by command', async (context) => {
    const store = await context.open();
    const clock = context.harness.clock;
    const seed = context.seed ?? (Math.random() * 0x7fffffff) | 0;
    context.log(`model-based run: ${context.propertyRuns} sequences, seed ${seed} (replay with WEFT_SEED=${seed})`);
    const arbitrary = fc.array(commandArbitrary(store.capabilities.ttl, store.capabilities.purge, clock !== undefined), {
      minLength: 1,
      maxLength: 30,
    });
    await fc.assert(
      fc.asyncProperty(arbitrary, async (commands) => {
        const namespace = `m${++namespaceCounter}`;
        const model = new KvModel(clock);
        for (const [index, command] of commands.entries()) {
          try {
            await runCommand(store, model, namespace, command, clock);
          } catch (error) {
            const trail = commands
              .slice(0, index + 1)
              .map(formatCommand)
              .join('; ');
            throw new Error(`command ${index} failed: ${trail}\n${error instanceof Error ? error.message : String(error)}`, {
              cause: error,
            });
          }
        }
      }),
      { numRuns: context.propertyRuns, seed, endOnFailure: false },
    );
  }),
];
