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
