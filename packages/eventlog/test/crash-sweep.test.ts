/**
 * Crash sweeps: a workload (appends, batches, idempotent retries, segment
 * rotation) is cut at every filesystem operation index on the simulated
 * filesystem, the machine "reboots" to its durable state (keeping a random,
 * seeded part of unsynced writes), and the log is reopened. At every cut:
 * every append acknowledged durable is readable with its payload at its
 * position; no partial batch is visible; the log is a prefix of what was
 * attempted (only the tail was lost); chains verify.
 */
import { type EventLog, openEventLog, SimulatedCrash, SimulatedFileSystem, type SyncMode } from '@weft/eventlog';
import { describe, expect, it } from 'vitest';

const kind = 0x1001;
const bytes = (text: string) => new TextEncoder().encode(text);
const text = (value: Uint8Array) => new TextDecoder().decode(value);
const long = process.env.WEFT_LONG === '1';

interface Attempt {
  readonly payloads: string[];
  readonly entity: string;
  /** Workload step at which the append was made. */
  readonly step: number;
}

interface Shred {
  readonly entity: string;
  readonly step: number;
  returned: boolean;
}

interface Outcome {
  /** Every batch the workload tried to append, in call order (= position order). */
  readonly attempts: Attempt[];
  /** Payloads whose append was acknowledged durable before the crash. */
  readonly durable: Set<string>;
  readonly shreds: Shred[];
}

const encryption = { granularity: 'entity' as const, masterKey: new Uint8Array(32).fill(3) };

async function workload(fs: SimulatedFileSystem, sync: SyncMode, size: number, encrypted = false): Promise<Outcome> {
  const attempts: Attempt[] = [];
  const durable = new Set<string>();
  const shreds: Shred[] = [];
  let log: EventLog | undefined;
  let step = 0;
  try {
    log = await openEventLog({ dir: '/log', fs, sync, segmentBytes: 700, syncIntervalMs: 1, ...(encrypted ? { encryption } : {}) });
    const opened = log;
    // Resolves when the append is accepted; its durability is recorded whenever the receipt says so.
    const append = async (entity: string, payloads: string[], idempotencyKey?: string) => {
      attempts.push({ entity, payloads, step });
      const receipt = await opened.appendBatch(
        payloads.map((payload) => ({ entity, kind, payload: bytes(payload) })),
        idempotencyKey === undefined ? {} : { idempotencyKey },
      );
      receipt.durable.then(
        () => {
          for (const payload of payloads) durable.add(payload);
        },
        () => undefined,
      );
      if (sync === 'always' || sync === 'group') await receipt.durable;
    };
    for (step = 0; step < size; step++) {
      const entity = `e${step % 3}`;
      if (encrypted && step % 6 === 5) {
        const shred: Shred = { entity, step, returned: false };
        shreds.push(shred);
        await opened.shred({ entity });
        shred.returned = true;
      }
      if (step % 5 === 0) {
        await append(entity, [`s${step}-a`, `s${step}-b`, `s${step}-c`]);
      } else if (step % 7 === 0) {
        // Three appends in flight together: they may share one fsync.
        const results = await Promise.allSettled([
          append(entity, [`s${step}-x`]),
          append('e9', [`s${step}-y`]),
          append(entity, [`s${step}-z`]),
        ]);
        const failed = results.find((result) => result.status === 'rejected');
        if (failed !== undefined) throw failed.reason;
      } else {
        await append(entity, [`s${step}`], step % 4 === 0 ? `key-${step}` : undefined);
        if ((sync === 'none' || sync === 'interval') && step % 3 === 0) await opened.flush();
      }
    }
    await opened.close();
  } catch (error) {
    if (!(error instanceof SimulatedCrash) && !(error instanceof Error && error.cause instanceof SimulatedCrash)) {
      if (!fs.crashed) throw error;
    }
  }
  return { attempts, durable, shreds };
}

async function check(fs: SimulatedFileSystem, outcome: Outcome, label: string, encrypted = false): Promise<void> {
  // With encryption, a reopen that fails with KeysetInvalid would mean a ciphertext reached the disk without its key.
  const log = await openEventLog({ dir: '/log', fs, sync: 'always', ...(encrypted ? { encryption } : {}) });
  try {
    const present: string[] = [];
    const stepOf = new Map(outcome.attempts.flatMap((attempt) => attempt.payloads.map((payload) => [payload, attempt] as const)));
    let index = 0;
    const attemptedPayloads = outcome.attempts.flatMap((attempt) => attempt.payloads);
    for await (const event of log.read()) {
      const expected = attemptedPayloads[index++] ?? '';
      if (event.disposition !== 'shredded') {
        present.push(text(event.payload));
        continue;
      }
      // Shredded only if a shred of its entity was called after it was appended...
      const attempt = stepOf.get(expected);
      const shredded = outcome.shreds.filter((shred) => shred.entity === attempt?.entity && shred.step >= (attempt?.step ?? 0));
      expect(shredded.length, `${label}: ${expected} is shredded without a shred of its entity`).toBeGreaterThan(0);
      present.push(expected);
    }
    // The log is a prefix of the attempted appends, batch by batch: nothing torn, nothing partial.
    const attempted = outcome.attempts.flatMap((attempt) => attempt.payloads);
    expect(present, `${label}: the log is not a prefix of what was attempted`).toEqual(attempted.slice(0, present.length));
    let covered = 0;
    for (const attempt of outcome.attempts) {
      const end = covered + attempt.payloads.length;
      if (present.length > covered && present.length < end)
        expect.fail(`${label}: a batch is partly visible (${attempt.payloads.join(',')})`);
      covered = end;
    }
    for (const payload of outcome.durable) expect(present, `${label}: durable ${payload} was lost`).toContain(payload);
    // ...and a shred that returned is still a shred after the crash.
    for (const shred of outcome.shreds.filter((candidate) => candidate.returned)) {
      for await (const event of log.readEntity(shred.entity)) {
        const attempt = stepOf.get(attemptedPayloads[event.position - 1] ?? '');
        if (attempt !== undefined && attempt.step < shred.step && attempt.payloads[0] !== '') {
          expect(event.disposition, `${label}: event ${event.position} survived the shred of ${shred.entity}`).toBe('shredded');
        }
      }
    }
    const verified = await log.verify();
    expect(verified.ok, `${label}: ${JSON.stringify(verified)}`).toBe(true);
  } finally {
    await log.close();
  }
}

describe('crash sweep on the simulated filesystem', () => {
  for (const sync of ['always', 'group', 'interval', 'none'] as SyncMode[]) {
    it(`sync '${sync}': every cut point recovers with every durable append and no partial batch`, async () => {
      const size = long ? 40 : 24;
      const dry = new SimulatedFileSystem();
      await workload(dry, sync, size);
      const total = dry.operations;
      expect(total).toBeGreaterThan(20);
      const seedBase = Number(process.env.WEFT_SEED ?? 1);
      console.log(`crash sweep '${sync}': ${total} cut points, seed base ${seedBase} (replay with WEFT_SEED=${seedBase})`);
      let crashes = 0;
      for (let cut = 0; cut < total; cut++) {
        const fs = new SimulatedFileSystem();
        fs.crashAt(cut);
        const outcome = await workload(fs, sync, size);
        if (fs.crashed) crashes++;
        fs.crash(seedBase * 100_003 + cut);
        await check(fs, outcome, `${sync} cut ${cut}`);
      }
      expect(crashes).toBe(total);
    }, 300_000);
  }

  for (const sync of ['always', 'group', 'none'] as SyncMode[]) {
    it(`sync '${sync}' with encryption and shreds: no ciphertext durable without its key, no shred undone`, async () => {
      const size = long ? 36 : 20;
      const dry = new SimulatedFileSystem();
      await workload(dry, sync, size, true);
      const total = dry.operations;
      const seedBase = Number(process.env.WEFT_SEED ?? 1);
      console.log(`encrypted crash sweep '${sync}': ${total} cut points, seed base ${seedBase} (replay with WEFT_SEED=${seedBase})`);
      for (let cut = 0; cut < total; cut++) {
        const fs = new SimulatedFileSystem();
        fs.crashAt(cut);
        const outcome = await workload(fs, sync, size, true);
        fs.crash(seedBase * 100_003 + cut);
        await check(fs, outcome, `encrypted ${sync} cut ${cut}`, true);
      }
    }, 300_000);
  }

  it('a lying disk that dropped acknowledged fsyncs is refused at open or recovers a valid prefix, never silently wrong', async () => {
    for (let seed = 0; seed < 20; seed++) {
      const fs = new SimulatedFileSystem();
      const log = await openEventLog({ dir: '/log', fs, sync: 'always' });
      await (await log.append({ entity: 'e', kind, payload: bytes('before') })).durable;
      fs.dropSyncs = true;
      await (await log.append({ entity: 'e', kind, payload: bytes('after') })).durable;
      await (await log.append({ entity: 'e', kind, payload: bytes('later') })).durable;
      fs.crash(seed);
      const reopened: EventLog | Error = await openEventLog({ dir: '/log', fs }).catch((error: unknown) => error as Error);
      if (reopened instanceof Error) {
        // The checkpoint proves more was durable than the disk kept.
        expect((reopened as { code?: string }).code).toBe('Corrupt');
        expect(reopened.message).toContain('recorded as durable');
        continue;
      }
      const payloads: string[] = [];
      for await (const event of reopened.read()) payloads.push(text(event.payload));
      expect(payloads).toEqual(['before', 'after', 'later'].slice(0, payloads.length));
      expect(payloads[0]).toBe('before');
      expect((await reopened.verify()).ok).toBe(true);
      await reopened.close();
    }
  });
});
