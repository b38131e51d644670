import { KvErrorCode, kvError } from './errors.js';

/** The longest key, in bytes. Keys are ASCII, so this is also its length in characters. */
export const maxKeyBytes = 1024;

// Token characters are the ones NATS subjects, Redis keys and FDB tuples all
// carry without escaping; `.` separates tokens.
const keyPattern = /^[A-Za-z0-9_=/-]+(?:\.[A-Za-z0-9_=/-]+)*$/;

/**
 * Why `key` is not a valid key, or `undefined` when it is.
 *
 * Rules: tokens of `[A-Za-z0-9_=/-]` separated by `.`; no empty token (so no
 * leading, trailing or doubled `.`); at most {@link maxKeyBytes} bytes.
 */
export function keyProblem(key: unknown): string | undefined {
  if (typeof key !== 'string') return `a key must be a string, got ${typeof key}`;
  if (key.length === 0) return 'a key must not be empty';
  if (key.length > maxKeyBytes) return `a key must be at most ${maxKeyBytes} bytes, got ${key.length}`;
  if (keyPattern.test(key)) return undefined;
  if (key.startsWith('.') || key.endsWith('.')) return 'a key must not start or end with "."';
  if (key.includes('..')) return 'a key must not contain an empty token ("..")';
  const bad = [...key].find((char) => char !== '.' && !/[A-Za-z0-9_=/-]/.test(char));
  return `a key may only contain A-Z a-z 0-9 _ = / - and "." between tokens, found ${JSON.stringify(bad)}`;
}

/** True when `key` follows the key rules (see {@link keyProblem}). */
export function isValidKey(key: unknown): key is string {
  return keyProblem(key) === undefined;
}

/**
 * Throws `InvalidKey` unless `key` follows the key rules. Every backend calls
 * this before any I/O.
 *
 * @throws {KvError} `InvalidKey`
 */
export function assertValidKey(key: unknown, backend: string): asserts key is string {
  const problem = keyProblem(key);
  if (problem !== undefined) {
    const shown = typeof key === 'string' ? clip(key) : undefined;
    throw kvError(KvErrorCode.InvalidKey, backend, `invalid key${shown === undefined ? '' : ` '${shown}'`}: ${problem}`);
  }
}

/**
 * Validates a prefix (a prefix is itself a valid key) and returns it.
 *
 * @throws {KvError} `InvalidKey`
 */
export function assertValidPrefix(prefix: unknown, backend: string): string {
  const problem = keyProblem(prefix);
  if (problem !== undefined) {
    const shown = typeof prefix === 'string' ? ` '${clip(prefix)}'` : '';
    throw kvError(KvErrorCode.InvalidKey, backend, `invalid prefix${shown}: ${problem}`);
  }
  return prefix as string;
}

/**
 * True when `key` lies under `prefix` by whole tokens: prefix `a.b` matches
 * `a.b` and `a.b.c`, never `a.bc`. An undefined prefix matches every key.
 */
export function keyMatchesPrefix(key: string, prefix: string | undefined): boolean {
  if (prefix === undefined) return true;
  if (!key.startsWith(prefix)) return false;
  return key.length === prefix.length || key.charCodeAt(prefix.length) === 46; // '.'
}

/** True when `key` lies under any of `prefixes` (undefined means the whole bucket). */
export function keyMatchesAnyPrefix(key: string, prefixes: readonly string[] | undefined): boolean {
  if (prefixes === undefined) return true;
  for (const prefix of prefixes) if (keyMatchesPrefix(key, prefix)) return true;
  return false;
}

/**
 * Validates the `prefixes` of a watch: omitted means the whole bucket; an empty
 * array is refused (it would silently watch nothing or everything). Prefixes
 * covered by another prefix in the list are dropped.
 *
 * @throws {KvError} `InvalidKey`
 */
export function normalizePrefixes(prefixes: readonly string[] | undefined, backend: string): string[] | undefined {
  if (prefixes === undefined) return undefined;
  if (!Array.isArray(prefixes) || prefixes.length === 0) {
    throw kvError(KvErrorCode.InvalidKey, backend, 'watch prefixes must be a non-empty array; omit it to watch the whole bucket');
  }
  for (const prefix of prefixes) assertValidPrefix(prefix, backend);
  const unique = [...new Set(prefixes)];
  return unique.filter((prefix) => !unique.some((other) => other !== prefix && keyMatchesPrefix(prefix, other)));
}

function clip(text: string): string {
  return text.length > 64 ? `${text.slice(0, 61)}...` : text;
}
