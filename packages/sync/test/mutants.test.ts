/**
 * The sync tests must catch realistic bugs in sync itself: each mutant
 * below is one bug an author of this package could write, applied to a copy
 * of its source; the attacks of the adversarial suite (and the fork check)
 * then run on devices of that copy, over the memory backend, until one
 * fails. Every mutant must be caught; the check that caught each is printed.
 */
import { fileURLToPath } from 'node:url';
import { createMemoryKvServer, openMemoryKv } from '@weft/kv';
import { describeSourceMutants, type SourceCheck, type SourceMutant } from '@weft/kv-testkit';
import { expect } from 'vitest';
import { allAttacks } from './adversarial/attacks.js';
import { bytes, kind, type SyncImplementation, World } from './adversarial/world.js';

const srcDir = fileURLToPath(new URL('../src', import.meta.url));

const mutants: SourceMutant[] = [
  {
    name: 'a different changeset at its next seq is taken for a retry of its own (a fork goes unreported)',
    file: 'push.ts',
    find: '    if (existing !== undefined && bytesEqual(existing.value, envelope)) {',
    replace: '    if (existing !== undefined) {',
  },
  {
    name: "a changeset that does not follow its device's previous one is applied (no chain check)",
    file: 'verify.ts',
    find: '  if (hexOf(envelope.previousHash) !== expected.previousHash) {',
    replace: '  if (false) {',
  },
  {
    name: "a removed member's changesets above its cutoff are applied",
    file: 'verify.ts',
    find: '  if (member.removedAfter !== undefined && seq > member.removedAfter) {',
    replace: '  if (false) {',
  },
  {
    name: "removal does not win: a removed owner's backdated entries count",
    file: 'membership-derive.ts',
    find: '    removal.subject === entry.author &&\n',
    replace: '    false &&\n',
  },
  {
    name: 'concurrent rotations are not voided (a key a removed device holds stays in force)',
    file: 'membership-derive.ts',
    find: '    if (voidKeys.has(entry.hash) || contested.has(entry.keyGeneration)) {',
    replace: '    if (contested.has(entry.keyGeneration)) {',
  },
  {
    name: "membership entries and manifests do not bind their library (another library's entry verifies)",
    file: 'identity.ts',
    find: '  return bound;',
    replace: '  return signed;',
  },
  {
    name: "an event bearing another member's tag is applied from anyone's changeset",
    file: 'pull.ts',
    find: '      if (author === undefined || author === device) return true;',
    replace: '      return true;',
  },
  {
    name: 'what a device verified of the membership is not read back after a restart',
    file: 'library.ts',
    find: '    if (this.#loaded) return;',
    replace: '    return;',
  },
  {
    name: 'a store that forgot changesets is never healed',
    file: 'sync.ts',
    find: '      await this.#healer.heal();',
    replace: '',
  },
];

const server = createMemoryKvServer();
const open = (bucket: string) => openMemoryKv({ server, bucket });

/** Runs one attack of the adversarial suite on devices of `implementation`. */
function attackCheck(claim: string): SourceCheck<SyncImplementation> {
  const attack = allAttacks.find((candidate) => candidate.claim.startsWith(`${claim} `));
  if (attack === undefined) throw new Error(`no attack ${claim}`);
  return {
    name: attack.claim,
    run: async (implementation) => {
      const world = await World.create(open, implementation);
      try {
        await attack.run(world);
      } finally {
        await world.close();
      }
    },
  };
}

/** A different changeset already at a device's next seq is a fork: the device stops, the bytes there stay. */
const forkCheck: SourceCheck<SyncImplementation> = {
  name: 'a different changeset at the next seq is a Fork',
  run: async (implementation) => {
    const world = await World.create(open, implementation);
    try {
      const owner = world.node('owner');
      await owner.log.append({ entity: 'doc', kind, payload: bytes('first') });
      await owner.sync.syncOnce();
      const self = owner.identity.deviceId;
      const foreign = (await world.raw.get(`changes.${self}.1`))?.value.slice() ?? new Uint8Array(8);
      foreign[foreign.length - 1] = (foreign[foreign.length - 1] ?? 0) ^ 1;
      await world.raw.create(`changes.${self}.2`, foreign);
      await owner.log.append({ entity: 'doc', kind, payload: bytes('second') });
      const error = await owner.sync.syncOnce().catch((caught: unknown) => caught);
      expect((error as { code?: string }).code).toBe('Fork');
      expect(owner.sync.status().lastPushedSeq).toBe(1);
    } finally {
      await world.close();
    }
  },
};

describeSourceMutants<SyncImplementation>('sync', mutants, {
  srcDir,
  checks: [forkCheck, ...['S14', 'R1', 'R8', 'R10', 'M6', 'X1', 'D1', 'D3'].map(attackCheck)],
});
