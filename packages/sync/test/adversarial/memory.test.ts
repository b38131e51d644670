/** Every attack of the adversarial suite, on the memory backend. */
import { afterAll, beforeAll, describe } from 'vitest';
import { allAttacks } from './attacks.js';
import { type Backend, itAttacks, memoryBackend } from './world.js';

const backend: Backend = memoryBackend;
let server: Awaited<ReturnType<Backend['start']>>;
beforeAll(async () => {
  server = await backend.start();
});
afterAll(() => server.stop());

describe('sync under attack (memory backend)', () => {
  itAttacks(allAttacks, () => server.open);
});
