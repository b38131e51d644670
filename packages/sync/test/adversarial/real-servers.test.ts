/**
 * A subset of the adversarial suite on spawned real servers (Redis, NATS):
 * the store attacks that depend on how a backend lists, watches and
 * compares, and the removed owner's attacks end to end.
 */
import { afterAll, beforeAll, describe } from 'vitest';
import { allAttacks } from './attacks.js';
import { type Backend, itAttacks, natsBackend, redisBackend } from './world.js';

const subset = ['S2', 'S4', 'S5', 'S8', 'S10', 'R2', 'R4', 'R5', 'R8', 'R9', 'D1', 'D2', 'D3', 'M6'];
const attacks = allAttacks.filter((attack) => subset.includes(attack.claim.split(' ')[0] as string));

for (const backend of [redisBackend, natsBackend] satisfies Backend[]) {
  if (backend.missing !== undefined) console.warn(`SKIPPING sync attacks on ${backend.name}: ${backend.missing}`);
  describe.skipIf(backend.missing !== undefined)(`sync under attack (${backend.name} server)`, () => {
    let server: Awaited<ReturnType<Backend['start']>>;
    beforeAll(async () => {
      server = await backend.start();
    });
    afterAll(() => server?.stop());
    itAttacks(attacks, () => server.open);
  });
}
