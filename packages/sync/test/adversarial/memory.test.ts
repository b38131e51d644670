/** Every attack of the adversarial suite, on the memory backend. */
import { afterAll, beforeAll, describe, it } from 'vitest';
import { allAttacks } from './attacks.js';
import { type Backend, memoryBackend, World } from './world.js';

const backend: Backend = memoryBackend;
let server: Awaited<ReturnType<Backend['start']>>;
beforeAll(async () => {
  server = await backend.start();
});
afterAll(() => server.stop());

describe('sync under attack (memory backend)', () => {
  for (const attack of allAttacks) {
    it(attack.claim, async () => {
      const world = await World.create(server.open);
      try {
        await attack.run(world);
      } finally {
        await world.close();
      }
    });
  }
});
