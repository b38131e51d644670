import type { StreamInfo } from '@nats-io/jetstream';
import { KvErrorCode, kvError, pause } from '@weft/kv/backend';
import { backend } from './errors.js';

/**
 * How recently a replicated stream's leader must have heard from enough of
 * its replicas to make a quorum with itself for a read or a refusal it
 * answered to be trusted.
 *
 * A leader answers message gets, and refuses a compare-and-swap, from its
 * own state without asking its replicas. One cut off from them (or paused
 * and resumed) goes on believing it leads until it has not heard from a
 * quorum for 10 s (nats-server's `lostQuorumInterval`), while the others
 * elect a new leader after 4-9 s without its heartbeats (sent every second)
 * and take writes: for a few seconds it answers from an older state. A
 * write the new leader acknowledged needs an election, so it comes at
 * least 3 s after the old leader last heard from the replicas that voted;
 * a leader that heard from a quorum less than 2 s before it answered a
 * request sent after the read cannot have been replaced before the read
 * began.
 */
export const leaderContactMs = 2000;
/** How long to wait before asking a leader that had not heard from its replicas again. */
const recheckMs = 250;

/**
 * How long ago the stream's leader last heard from enough replicas to make a
 * quorum with itself, in milliseconds; `undefined` when the stream has no
 * leader or reports no replicas to count.
 */
export function quorumSilenceMs(info: StreamInfo): number | undefined {
  const cluster = info.cluster;
  if (cluster?.leader === undefined || cluster.leader === '') return undefined;
  const replicas = cluster.replicas ?? [];
  // The leader counts itself: a quorum of R needs floor(R/2) others.
  const needed = Math.floor(Math.max(info.config.num_replicas, replicas.length + 1) / 2);
  if (needed === 0) return 0;
  // A replica's `active` is the time since the leader last heard from it (nats-server's view; `offline` is the meta
  // layer's, which lags after a start).
  const heard = replicas.map((replica) => replica.active / 1_000_000).sort((a, b) => a - b);
  return heard.length < needed ? undefined : heard[needed - 1];
}

/** What {@link confirmLeader} needs: the stream's info from its leader, and the handle's deadline. */
export interface LeaderSource {
  streamInfo(): Promise<StreamInfo>;
  readonly parts: { readonly timeoutMs: number };
}

/**
 * Confirms that the leader of a replicated stream, asked after a read or a
 * refusal was requested, had heard from a quorum within
 * {@link leaderContactMs}: what it answered then was not older than any
 * acknowledged write. A leader under load may miss that once; it is asked
 * again until the handle's deadline, then the caller gets `Timeout`,
 * retryable: nothing was written, and the answer cannot be trusted.
 */
export async function confirmLeader(source: LeaderSource, key: string | undefined, what: string): Promise<void> {
  const started = performance.now();
  for (;;) {
    const info = await source.streamInfo();
    const silence = quorumSilenceMs(info);
    if (silence !== undefined && silence < leaderContactMs) return;
    if (performance.now() - started + recheckMs >= source.parts.timeoutMs) {
      const leader = info.cluster?.leader || 'none';
      throw kvError(
        KvErrorCode.Timeout,
        backend,
        silence === undefined
          ? `${what}: the stream has no leader with replicas to hear from (leader: ${leader}); its answer cannot be trusted and nothing was written`
          : `${what}: the stream's leader ${leader} had not heard from a quorum of its replicas for ${Math.round(silence)} ms (it may be cut off from them and replaced); its answer cannot be trusted and nothing was written`,
        { key, retryable: true },
      );
    }
    await pause(recheckMs);
  }
}
