/**
 * The tracing channels and the OpenTelemetry bridge of
 * docs/guides/observability.md: the guide's block runs as written, against
 * the OpenTelemetry SDK's in-memory exporter, over a KV store, an event log
 * and a sync round. Spans carry the documented context and never a value or
 * a payload; failures are marked; the bridge stops cleanly.
 */
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { MemoryFileSystem, openEventLog } from '@weft/eventlog';
import { createMemoryKvServer, KvError, openMemoryKv } from '@weft/kv';
import { createIdentity, createLibrary, invitationOf, lwwSet, openSync } from '@weft/sync';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const root = new URL('..', import.meta.url).pathname;
const guide = readFileSync(join(root, 'docs', 'guides', 'observability.md'), 'utf8');
const block = /## An OpenTelemetry bridge[\s\S]*?```ts\n([\s\S]*?)```/.exec(guide)?.[1];
// Written beside the tests (git-ignored) and imported as TypeScript, so its own imports resolve as in a user's project.
const bridgeDir = join(root, 'test', '.observability-bridge');
const bridgeFile = join(bridgeDir, 'bridge.ts');

const exporter = new InMemorySpanExporter();
const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
let stop: () => void = () => undefined;

beforeAll(async () => {
  if (block === undefined) throw new Error('docs/guides/observability.md has no bridge block');
  mkdirSync(bridgeDir, { recursive: true });
  // The block is TypeScript (type-checked by docs-typescript.test.ts), imported as written.
  writeFileSync(bridgeFile, block);
  const { bridgeWeftToOpenTelemetry } = (await import(bridgeFile)) as {
    bridgeWeftToOpenTelemetry: (tracer: unknown) => () => void;
  };
  stop = bridgeWeftToOpenTelemetry(provider.getTracer('weft-test'));
});

afterAll(() => {
  stop();
  rmSync(bridgeDir, { recursive: true, force: true });
});

const secret = 'a-value-no-span-may-hold';
const bytes = (text: string) => new TextEncoder().encode(text);
const spansNamed = (prefix: string) => exporter.getFinishedSpans().filter((span) => span.name.startsWith(prefix));

describe('tracing channels bridged to OpenTelemetry', () => {
  it('KV operations: one span each with operation, backend, bucket and key; a refused compare-and-swap is an error span', async () => {
    exporter.reset();
    const kv = await openMemoryKv({ server: createMemoryKvServer(), bucket: 'traced' });
    const first = await kv.put('profiles.ada', bytes(secret));
    await kv.get('profiles.ada');
    await kv.update('profiles.ada', bytes(secret), first);
    const refused = await kv.update('profiles.ada', bytes(secret), first).catch((error: unknown) => error);
    expect(KvError.is(refused, 'RevisionMismatch')).toBe(true);
    await kv.close();

    const spans = spansNamed('weft:kv:operation');
    expect(spans.map((span) => span.name)).toEqual([
      'weft:kv:operation put',
      'weft:kv:operation get',
      'weft:kv:operation update',
      'weft:kv:operation update',
    ]);
    expect(spans[0]?.attributes).toEqual({ operation: 'put', backend: 'memory', bucket: 'traced', key: 'profiles.ada' });
    expect(spans.slice(0, 3).every((span) => span.status.code !== 2)).toBe(true);
    expect(spans[3]?.status).toMatchObject({ code: 2, message: 'RevisionMismatch' });
    expect(spans[3]?.events.some((event) => event.name === 'exception')).toBe(true);
    expect(JSON.stringify(spans.map((span) => span.attributes))).not.toContain(secret);
  });

  it('event log appends and flushes: the batch size, the sync mode and the position made durable, never a payload', async () => {
    exporter.reset();
    const log = await openEventLog({ dir: '/traced', fs: new MemoryFileSystem(), sync: 'none' });
    await log.appendBatch([1, 2, 3].map(() => ({ entity: 'order-1', kind: 0x1001, payload: bytes(secret) })));
    await log.append({ entity: 'order-1', kind: 0x1002, payload: bytes(secret) });
    await log.flush();
    await log.close();
    const appends = spansNamed('weft:eventlog:append');
    expect(appends.map((span) => span.attributes)).toEqual([
      { dir: '/traced', events: 3, sync: 'none' },
      { dir: '/traced', events: 1, sync: 'none' },
    ]);
    expect(spansNamed('weft:eventlog:flush')[0]?.attributes).toEqual({ dir: '/traced', head: 4 });
    expect(JSON.stringify(exporter.getFinishedSpans().map((span) => span.attributes))).not.toContain(secret);
  });

  it('sync rounds: a push span and a pull span per round, with the library and the device', async () => {
    const server = createMemoryKvServer();
    const founder = createIdentity();
    const other = createIdentity();
    const kvOf = () => openMemoryKv({ server, bucket: 'library' });
    const library = await createLibrary({ kv: await kvOf(), identity: founder, id: 'traced-library' });
    const founderLog = await openEventLog({ dir: '/a', fs: new MemoryFileSystem(), encryption: {} });
    const founderSync = await openSync({ log: founderLog, kv: await kvOf(), identity: founder, library, live: false });
    await founderSync.addMember(invitationOf(other));
    const otherLog = await openEventLog({ dir: '/b', fs: new MemoryFileSystem(), encryption: {} });
    const otherSync = await openSync({ log: otherLog, kv: await kvOf(), identity: other, library, live: false });
    await lwwSet(founderLog, 'settings', 'theme', bytes(secret));
    exporter.reset();
    await founderSync.syncOnce();
    await otherSync.syncOnce();
    const pushes = spansNamed('weft:sync:push');
    const pulls = spansNamed('weft:sync:pull');
    expect(pushes.map((span) => span.attributes)).toEqual([
      { library: 'traced-library', device: founder.deviceId },
      { library: 'traced-library', device: other.deviceId },
    ]);
    expect(pulls.map((span) => span.attributes.device)).toEqual([founder.deviceId, other.deviceId]);
    // The rounds' own KV operations are traced too.
    expect(spansNamed('weft:kv:operation').length).toBeGreaterThan(0);
    expect(JSON.stringify(exporter.getFinishedSpans().map((span) => span.attributes))).not.toContain(secret);
    for (const closable of [otherSync, founderSync, otherLog, founderLog]) await closable.close();
  });

  it('once stopped, the bridge makes no more spans', async () => {
    stop();
    stop = () => undefined;
    exporter.reset();
    const kv = await openMemoryKv({ server: createMemoryKvServer(), bucket: 'quiet' });
    await kv.put('k', bytes('v'));
    await kv.close();
    expect(exporter.getFinishedSpans()).toEqual([]);
  });
});

describe('subscribeTrace', () => {
  it('subscribes only the handlers given, typed with the channel context, and unsubscribes them', async () => {
    const { subscribeTrace } = await import('@weft/kv');
    const { kvOperationChannel } = await import('@weft/kv/backend');
    const seen: string[] = [];
    const stopOne = subscribeTrace(kvOperationChannel, {
      asyncEnd(context) {
        seen.push(`${context.operation} ${context.key ?? ''}`);
      },
    });
    const kv = await openMemoryKv({ server: createMemoryKvServer(), bucket: 'subscribed' });
    await kv.put('a', bytes('x'));
    await kv.get('a');
    stopOne();
    await kv.get('a');
    await kv.close();
    expect(seen).toEqual(['put a', 'get a']);
  });
});
