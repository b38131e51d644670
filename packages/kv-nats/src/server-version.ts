/** A NATS server version, as reported in the connection's INFO. */
export interface ServerVersion {
  readonly major: number;
  readonly minor: number;
  readonly patch: number;
  readonly text: string;
}

/** Parses `2.9.10`, `2.11.0-RC.1` and the like; anything unreadable counts as 0.0.0 (the most conservative). */
export function parseServerVersion(text: string): ServerVersion {
  const match = /^v?(\d+)\.(\d+)\.(\d+)/.exec(text);
  if (match === null) return { major: 0, minor: 0, patch: 0, text };
  return { major: Number(match[1]), minor: Number(match[2]), patch: Number(match[3]), text };
}

/** Orders two versions: negative, zero or positive. */
export function compareVersions(a: ServerVersion, b: ServerVersion): number {
  return a.major - b.major || a.minor - b.minor || a.patch - b.patch;
}

/** The first server version whose replicated streams serialise conditional publishes (nats-server#4319). */
const serialisedConditionalPublish = parseServerVersion('2.9.21');

/**
 * Why compare-and-swap cannot be honoured on a stream, or `undefined` when
 * it can. Before 2.9.21 the leader of a replicated stream checked
 * `Nats-Expected-Last-Subject-Sequence` against its applied state only, so
 * two publishes expecting one sequence could both be accepted (two winners of
 * one `create`, a TTL marker over a newer write). Single-replica streams were
 * never affected.
 */
export function conditionalWritesUnsupported(version: ServerVersion, replicas: number): string | undefined {
  if (replicas <= 1 || compareVersions(version, serialisedConditionalPublish) >= 0) return undefined;
  return (
    `compare-and-swap (create, update, deleteWithVersion) and TTLs on a bucket with ${replicas} replicas need nats-server 2.9.21 or newer, ` +
    `connected to ${version.text}: older servers can accept two writes that expect the same version (nats-server#4319)`
  );
}

/** The first server line with atomic batch publish (`allow_atomic`, ADR-50), which `commit` runs on. */
export const atomicBatchSince = parseServerVersion('2.12.0');

/** The first server line with per-message TTL (`Nats-TTL`) and limit markers (`subject_delete_marker_ttl`). */
export const nativeTtlSince = parseServerVersion('2.11.0');

/**
 * Why a bucket's TTLs cannot be the server's own, or `undefined` when they
 * can: a 2.11+ server, and a stream that keeps one version per key, allows
 * per-message TTL and writes a marker when it removes a subject's last
 * message (without one, a watch could not see the expiry). With more than
 * one version per key the server raises every per-message TTL to the marker
 * TTL (nats-server#6741), which would delay expiries by as long as markers
 * are kept. Buckets where this does not hold keep the emulation: an expiry
 * header, an index and sweepers.
 */
export function nativeTtlUnavailable(
  version: ServerVersion,
  config: { readonly allow_msg_ttl?: boolean; readonly subject_delete_marker_ttl?: number; readonly max_msgs_per_subject: number },
): string | undefined {
  if (compareVersions(version, nativeTtlSince) < 0) return `per-message TTL needs nats-server 2.11 or newer, connected to ${version.text}`;
  if (config.max_msgs_per_subject !== 1) {
    return `the bucket keeps ${config.max_msgs_per_subject > 1 ? config.max_msgs_per_subject : 'unlimited'} versions per key, and the server raises per-message TTLs to the marker TTL on such buckets (native TTL needs history 1)`;
  }
  if (config.allow_msg_ttl !== true) return 'the bucket does not allow per-message TTL (allow_msg_ttl)';
  if (!((config.subject_delete_marker_ttl ?? 0) > 0)) return 'the bucket writes no limit markers (subject_delete_marker_ttl)';
  return undefined;
}
