/**
 * An author stopped after each write of a push, on a store with `commit`
 * (the changesets and the head move in one commit) and on one without (the
 * changesets, then the head). Where the store commits, a reader has none
 * or all of the push and no `ChangesetGap` alarm; without commit, some stops
 * leave it with part of the push until the author returns. On either store
 * the author, restarted from its durable state, finishes the push and both
 * devices converge.
 */
import { MemoryFileSystem, openEventLog } from '@weft/eventlog';
import { createMemoryKvServer, KvError, KvErrorCode, type KvStore, openMemoryKv } from '@weft/kv';
import { openSync } from '@weft/sync';
import { describe, expect, it } from 'vitest';
import { bytes, eventSet, kind, makeLibrary } from './helpers.js';

const writeMethods = new Set(['put', 'create', 'update', 'delete', 'deleteWithVersion', 'putWithTtl', 'purge', 'commit']);

/**
 * The author's view of the store: after `stopAfter` writes every later write
 * fails as if the process had stopped there (nothing more reaches the store);
 * `commit: false` hides the store's commit.
 */
function stoppingStore(inner: KvStore, stopAfter: number, commit: boolean, counter: { writes: number }): KvStore {
  return new Proxy(inner, {
    get(target, property, receiver) {
      if (property === 'capabilities') return commit ? target.capabilities : { ...target.capabilities, commit: false };
      const member = Reflect.get(target, property, receiver);
      if (typeof member !== 'function') return member;
      if (!writeMethods.has(String(property))) return member.bind(target);
      return (...args: unknown[]) => {
        if (property === 'commit' && !commit) {
          return Promise.reject(new KvError(KvErrorCode.Unsupported, '[test] this store does not commit', { backend: 'memory' }));
        }
        if (counter.writes >= stopAfter) {
          return Promise.reject(new KvError(KvErrorCode.NotConnected, '[test] the author stopped', { backend: 'memory' }));
        }
        counter.writes++;
        return member.apply(target, args);
      };
    },
  });
}

/** One run: the author pushes three changesets and a head, stopped after `stopAfter` writes; returns what the reader saw. */
async function run(commit: boolean, stopAfter: number) {
  const server = createMemoryKvServer();
  const { identities, library } = makeLibrary(2);
  const [authorIdentity, readerIdentity] = identities as [(typeof identities)[0], (typeof identities)[0]];
  const options = { live: false, maxEventsPerChangeset: 1, batchChangesets: 3 } as const;
  const authorFs = new MemoryFileSystem();
  const counter = { writes: 0 };
  const openAuthor = async (limit: number) => {
    const log = await openEventLog({ dir: '/author', fs: authorFs, sync: 'always', encryption: {} });
    const kv = stoppingStore(await openMemoryKv({ server, bucket: 'lib' }), limit, commit, counter);
    return { log, sync: await openSync({ log, kv, identity: authorIdentity, library, ...options }) };
  };
  const readerLog = await openEventLog({ dir: '/reader', fs: new MemoryFileSystem(), encryption: {} });
  const reader = await openSync({
    log: readerLog,
    kv: await openMemoryKv({ server, bucket: 'lib' }),
    identity: readerIdentity,
    library,
    ...options,
  });
  // Membership and keys first, with no stop.
  let author = await openAuthor(Number.POSITIVE_INFINITY);
  const closeAuthor = async () => {
    await author.sync.close();
    await author.log.close();
  };
  await author.sync.syncOnce();
  await reader.syncOnce();
  for (let n = 0; n < 3; n++) await author.log.append({ entity: 'note', kind, payload: bytes(`note-${n}`) });
  counter.writes = 0;
  await closeAuthor();
  author = await openAuthor(stopAfter);
  const stopped = await author.sync.syncOnce().then(
    () => false,
    () => true,
  );
  const pushWrites = counter.writes;
  await reader.syncOnce().catch(() => undefined);
  const seen = (await eventSet(readerLog)).filter((event) => event.includes('note-'));
  const alarms = reader.status().alarms.map((alarm) => alarm.code);
  // The author comes back and finishes; both converge.
  await closeAuthor();
  author = await openAuthor(Number.POSITIVE_INFINITY);
  await author.sync.syncOnce();
  await reader.syncOnce();
  const converged = JSON.stringify(await eventSet(readerLog)) === JSON.stringify(await eventSet(author.log));
  await closeAuthor();
  await reader.close();
  await readerLog.close();
  return { stopped, pushWrites, seen: seen.length, alarms, converged };
}

describe('an author stopped between any two writes of a push', () => {
  for (const commit of [true, false]) {
    it(commit
      ? 'on a store with commit: the reader has none or all of the push, never a gap'
      : 'on a store without commit: the push finishes when the author returns', async () => {
      const complete = await run(commit, Number.POSITIVE_INFINITY);
      expect(complete.stopped).toBe(false);
      expect(complete.seen).toBe(3);
      // The writes of a whole push: one commit, or three changesets and the head (and whatever else sync writes).
      const writes = complete.pushWrites;
      expect(writes).toBeGreaterThan(0);
      let partial = 0;
      for (let stopAfter = 0; stopAfter < writes; stopAfter++) {
        const outcome = await run(commit, stopAfter);
        if (outcome.seen > 0 && outcome.seen < 3) partial++;
        expect(outcome.converged, `converged after a stop after ${stopAfter} of ${writes} writes`).toBe(true);
        if (commit) {
          expect([0, 3], `events the reader had after a stop after ${stopAfter} of ${writes} writes`).toContain(outcome.seen);
          expect(outcome.alarms, `alarms after a stop after ${stopAfter} of ${writes} writes`).not.toContain('ChangesetGap');
        }
      }
      // Without commit a stopped push is seen in part until its author returns: what commit removes.
      if (!commit) expect(partial, 'stops that left the reader with part of the push').toBeGreaterThan(0);
    }, 120_000);
  }
});
