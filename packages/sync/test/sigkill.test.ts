/**
 * A real child process appends and syncs through a spawned Redis and is
 * killed with SIGKILL at random moments, five times, while a peer keeps
 * pushing; then it drains. No event is lost or duplicated, every own event
 * it acknowledged reaches the peer, and no event it imported is pushed
 * again as its own.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MemoryFileSystem, openEventLog } from '@weft/eventlog';
import { openRedisKv } from '@weft/kv-redis';
import { openSync } from '@weft/sync';
import { redisUnavailable, runChild, startRedisServer } from '@weft/test-servers';
import { describe, expect, it } from 'vitest';
import { bytes, kind, makeLibrary, pushedBy } from './helpers.js';

const child = new URL('./fixtures/sync-child.mjs', import.meta.url).pathname;
const missing = redisUnavailable();
if (missing !== undefined) console.warn(`SKIPPING the sync SIGKILL loop: ${missing}`);

describe.skipIf(missing !== undefined)('SIGKILL of a real syncing process (Redis)', () => {
  it('loses, duplicates and re-pushes nothing across five kills', async () => {
    const server = await startRedisServer();
    const dir = mkdtempSync(join(tmpdir(), 'weft-sync-sigkill-'));
    const { identities, library } = makeLibrary(2);
    const [peerIdentity, victim] = identities as [(typeof identities)[0], (typeof identities)[0]];
    const describedLibrary = JSON.stringify({
      id: library.id,
      key: Buffer.from(library.key as Uint8Array).toString('hex'),
      members: (library.members ?? []).map((member) => ({
        deviceId: member.deviceId,
        publicKey: Buffer.from(member.publicKey).toString('hex'),
      })),
    });
    const args = [child, dir, server.url, Buffer.from(victim.privateKey).toString('hex'), describedLibrary];
    const kv = await openRedisKv({ url: server.url, bucket: 'lib' });
    const peerLog = await openEventLog({ dir: '/peer', fs: new MemoryFileSystem(), encryption: {} });
    const peer = await openSync({
      log: peerLog,
      kv,
      identity: peerIdentity,
      library,
      live: false,
      batchChangesets: 8,
      maxEventsPerChangeset: 2,
    });
    const peerIds: string[] = [];
    const acknowledged: string[] = [];
    try {
      for (let round = 0; round < 5; round++) {
        for (let n = 0; n < 30; n++) {
          const receipt = await peerLog.append({ entity: 'peer', kind, payload: bytes(`peer-${round}-${n}`) });
          peerIds.push(receipt.events[0]?.id as string);
        }
        await peer.syncOnce();
        let buffered = '';
        let killing = false;
        const run = await runChild('node', args, {
          limitMs: 60_000,
          onStdout: (chunk, process) => {
            buffered += chunk;
            const lines = buffered.split('\n');
            buffered = lines.pop() ?? '';
            for (const line of lines) if (line.startsWith('own ')) acknowledged.push(line.slice(4));
            if (!killing && acknowledged.length > 0) {
              killing = true;
              setTimeout(() => process.kill('SIGKILL'), Math.floor(Math.random() * 150));
            }
          },
        });
        expect(run.timedOut, `round ${round}: the child did not get killed: ${run.stderr}`).toBe(false);
        expect(run.signal, `round ${round}: the child exited by itself: ${run.stderr}`).toBe('SIGKILL');
      }
      const drain = await runChild('node', [...args, 'drain'], { limitMs: 60_000 });
      expect(drain.stdout.trim(), drain.stderr).toBe('drained');
      for (let round = 0; round < 3; round++) await peer.syncOnce();
      const log = await openEventLog({ dir, encryption: {} });
      const victimIds: string[] = [];
      for await (const event of log.read()) victimIds.push(event.id);
      await log.close();
      const pushed = await pushedBy(kv, victim.deviceId, library.key as Uint8Array);
      expect(new Set(victimIds).size, 'an event is in the victim log twice').toBe(victimIds.length);
      for (const id of peerIds) expect(victimIds, `the peer's ${id} was lost`).toContain(id);
      expect(
        pushed.filter((id) => peerIds.includes(id)),
        "imported events were pushed again as the victim's own",
      ).toEqual([]);
      expect(new Set(pushed).size, 'an own event was pushed twice').toBe(pushed.length);
      const peerSeen = new Set<string>();
      for await (const event of peerLog.read()) peerSeen.add(event.id);
      for (const id of acknowledged) expect(peerSeen.has(id), `acknowledged own event ${id} never reached the peer`).toBe(true);
      console.log(`sync SIGKILL loop: ${acknowledged.length} own events acknowledged, ${peerIds.length} pulled, ${pushed.length} pushed`);
    } finally {
      await peer.close();
      await peerLog.close();
      await kv.close();
      await server.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  }, 240_000);
});
