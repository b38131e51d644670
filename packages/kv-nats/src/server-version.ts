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
