/**
 * `openNatsKv({ monitor })` reads how the servers fsync from their
 * monitoring endpoints and warns once per process about servers that
 * acknowledge before they fsync (a machine crash loses what they
 * acknowledged since: `machine-crash.test.ts`). Real servers of both lines,
 * each policy; endpoints that cannot be read or answer nonsense are warned
 * about and the handle opens anyway; monitoring URLs that are not URLs are
 * refused.
 */

import { writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KvError, KvErrorCode } from '@weft/kv';
import { openNatsKv } from '@weft/kv-nats';
import { freePort, type NatsServer, natsUnavailable, startNatsServer } from '@weft/test-servers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/** The weft warnings emitted while `run` runs. */
async function warningsDuring(run: () => Promise<void>): Promise<Array<{ code: string; message: string }>> {
  const warnings: Array<{ code: string; message: string }> = [];
  const listener = (warning: Error & { code?: string }) => {
    if (warning.name === 'WeftWarning') warnings.push({ code: warning.code ?? '', message: warning.message });
  };
  process.on('warning', listener);
  try {
    await run();
    // Warnings are emitted on the next tick.
    await new Promise((resolve) => setImmediate(resolve));
  } finally {
    process.off('warning', listener);
  }
  return warnings;
}

const monitorOf = (server: NatsServer) => `http://127.0.0.1:${server.monitorPort}`;

const missing = natsUnavailable('current');
describe.skipIf(missing !== undefined)('the servers’ fsync policy (nats current line)', () => {
  let lazy: NatsServer;
  let always: NatsServer;
  let tenSeconds: NatsServer;
  beforeAll(async () => {
    const config = (name: string, text: string) => {
      const file = join(tmpdir(), `weft-fsync-${process.pid}-${name}.conf`);
      writeFileSync(file, text);
      return file;
    };
    [lazy, always, tenSeconds] = await Promise.all([
      startNatsServer({ line: 'current' }),
      startNatsServer({ line: 'current', args: ['-c', config('always', 'jetstream { sync_interval: always }\n')] }),
      startNatsServer({ line: 'current', args: ['-c', config('ten', 'jetstream { sync_interval: "10s" }\n')] }),
    ]);
  });
  afterAll(async () => {
    await Promise.all([lazy, always, tenSeconds].map((server) => server?.stop()));
  });

  it('reports a server that fsyncs always, and warns about none', async () => {
    const warnings = await warningsDuring(async () => {
      const store = await openNatsKv({ servers: always.url, bucket: 'synced', create: true, monitor: monitorOf(always) });
      expect(store.fsync).toMatchObject({ always: true, intervalMs: 0 });
      expect(store.fsync?.servers).toEqual([{ monitor: monitorOf(always), server: expect.any(String), always: true, intervalMs: 0 }]);
      await store.destroy();
    });
    expect(warnings).toEqual([]);
  });

  it('reports the default two minutes and warns once per process, naming the setting', async () => {
    const warnings = await warningsDuring(async () => {
      for (const bucket of ['lazy_a', 'lazy_b']) {
        const store = await openNatsKv({ servers: lazy.url, bucket, create: true, monitor: `${monitorOf(lazy)}/` });
        expect(store.fsync).toMatchObject({ always: false, intervalMs: 120_000 });
        await store.destroy();
      }
    });
    expect(warnings.map((warning) => warning.code)).toEqual(['WEFT_NATS_LAZY_FSYNC']);
    expect(warnings[0]?.message).toMatch(/acknowledges writes before it fsyncs them.*sync_interval: always/);
    expect(warnings[0]?.message).toContain('every 120 s');
  });

  it('over several servers, one that does not fsync always makes the policy lazy, with the longest interval', async () => {
    const warnings = await warningsDuring(async () => {
      const store = await openNatsKv({
        servers: always.url,
        bucket: 'mixed',
        create: true,
        monitor: [monitorOf(always), monitorOf(tenSeconds)],
      });
      expect(store.fsync).toMatchObject({ always: false, intervalMs: 10_000 });
      expect(store.fsync?.servers.map((server) => server.always)).toEqual([true, false]);
      await store.destroy();
    });
    expect(warnings.map((warning) => warning.code)).toEqual(['WEFT_NATS_LAZY_FSYNC']);
    expect(warnings[0]?.message).toContain('every 10 s');
  });

  it('an endpoint that cannot be read, or answers something else, is warned about and the handle opens', async () => {
    const closed = `http://127.0.0.1:${await freePort()}`;
    const nonsense: Server = createServer((request, response) => {
      response.setHeader('content-type', 'application/json');
      response.end(request.url === '/varz' ? '{"jetstream": [1, 2, 3]}' : '{}');
    });
    await new Promise<void>((resolve) => nonsense.listen(0, '127.0.0.1', resolve));
    const address = nonsense.address();
    const liar = `http://127.0.0.1:${typeof address === 'object' && address !== null ? address.port : 0}`;
    try {
      const warnings = await warningsDuring(async () => {
        for (const monitor of [closed, liar]) {
          const store = await openNatsKv({ servers: lazy.url, bucket: 'unknown', create: true, monitor, timeoutMs: 1000 });
          expect(store.fsync).toBeUndefined();
          await store.put('k', new TextEncoder().encode('still works'));
          await store.destroy();
        }
      });
      expect(warnings.map((warning) => warning.code)).toEqual(['WEFT_NATS_FSYNC_UNKNOWN', 'WEFT_NATS_FSYNC_UNKNOWN']);
      expect(warnings[0]?.message).toContain(`cannot read ${closed}/varz`);
      expect(warnings[1]?.message).toContain('not the monitoring endpoint of a JetStream server');
    } finally {
      nonsense.close();
    }
  });

  it('monitoring URLs that are not http URLs are refused before anything is opened', async () => {
    for (const monitor of ['127.0.0.1:8222', 'nats://127.0.0.1:8222', [], [42 as unknown as string]]) {
      const error = await openNatsKv({ servers: lazy.url, bucket: 'refused', monitor }).catch((caught: unknown) => caught);
      expect(KvError.is(error, KvErrorCode.InvalidArgument), String(error)).toBe(true);
    }
  });
});

const missingSystem = natsUnavailable('system');
describe.skipIf(missingSystem !== undefined)('the servers’ fsync policy (nats system line, 2.9)', () => {
  it('a server that reports no sync_interval fsyncs every two minutes', async () => {
    const server = await startNatsServer({ line: 'system' });
    try {
      const store = await openNatsKv({ servers: server.url, bucket: 'old', create: true, monitor: monitorOf(server) });
      expect(store.fsync).toMatchObject({ always: false, intervalMs: 120_000 });
      await store.destroy();
    } finally {
      await server.stop();
    }
  });
});
