/**
 * Stores that forget what they acknowledged, on spawned real servers: Redis
 * killed and restarted from its last RDB snapshot (its default kind of
 * persistence, taken with SAVE), and a NATS server whose store directory is
 * replaced with an earlier copy (a restore from backup, or what a lazy
 * fsync leaves after a power cut). The changesets, heads, membership entries
 * and key wraps written after the copy are gone; the devices write them back
 * and every device, an offline author's writes included, converges
 * (docs/protocols/sync.md, "When the store forgets").
 */
import { openNatsKv } from '@weft/kv-nats';
import { openRedisKv } from '@weft/kv-redis';
import { natsUnavailable, redisCommand, redisUnavailable, startNatsServer, startRedisServer } from '@weft/test-servers';
import { afterEach, describe, it } from 'vitest';
import { storeAmnesia } from './adversarial/chain-attacks.js';
import { World } from './adversarial/world.js';

let world: World | undefined;
let stop: (() => Promise<void>) | undefined;
afterEach(async () => {
  await world?.close();
  await stop?.();
  world = undefined;
  stop = undefined;
});

const redisMissing = redisUnavailable();
const natsMissing = natsUnavailable();
if (redisMissing !== undefined) console.warn(`SKIPPING store amnesia on Redis: ${redisMissing}`);
if (natsMissing !== undefined) console.warn(`SKIPPING store amnesia on NATS: ${natsMissing}`);

describe('a store that forgets is healed by its devices', () => {
  it.skipIf(redisMissing !== undefined)(
    'Redis restarted from an older RDB snapshot',
    async () => {
      const server = await startRedisServer();
      stop = () => server.stop();
      world = await World.create((bucket) => openRedisKv({ url: server.url, bucket }));
      await storeAmnesia(world, async () => {
        const saved = await redisCommand(server.port, ['SAVE']);
        if (!saved.startsWith('+OK')) throw new Error(`SAVE answered ${saved}`);
        const copy = await server.saveData();
        return () => server.restartFrom(copy);
      });
    },
    120_000,
  );

  it.skipIf(natsMissing !== undefined)(
    'a NATS server whose store directory is replaced with an earlier copy',
    async () => {
      const server = await startNatsServer();
      stop = () => server.stop();
      world = await World.create((bucket) => openNatsKv({ servers: server.url, bucket, create: { history: 1 } }));
      await storeAmnesia(world, async () => {
        const copy = await server.saveData();
        return () => server.restartFrom(copy);
      });
    },
    120_000,
  );
});
