import { fc, test } from '@fast-check/vitest';
import { KvError, keyMatchesPrefix, keyProblem, maxKeyBytes } from '@weft/kv';
import { assertValidKey, normalizePrefixes } from '@weft/kv/backend';
import { describe, expect, it } from 'vitest';

const tokenChar = fc.constantFrom(...'ABCXYZabcxyz0189_=/-'.split(''));
const token = fc.string({ unit: tokenChar, minLength: 1, maxLength: 6 });
const validKey = fc.array(token, { minLength: 1, maxLength: 6 }).map((tokens) => tokens.join('.'));

describe('key rules', () => {
  test.prop([validKey])('keys built from valid tokens are accepted', (key) => {
    expect(keyProblem(key)).toBeUndefined();
  });

  test.prop([validKey, fc.constantFrom(' ', '*', '>', ':', '\u00e9', '\n', '\u0000', '#')])(
    'any forbidden character makes a key invalid, with a message naming it',
    (key, bad) => {
      const problem = keyProblem(`${key}${bad}`);
      expect(problem).toContain(JSON.stringify(bad));
    },
  );

  test.prop([validKey])('empty tokens are refused wherever they appear', (key) => {
    for (const broken of [`.${key}`, `${key}.`, `${key}..x`]) expect(keyProblem(broken)).toBeDefined();
  });

  it('accepts exactly 1024 bytes and refuses 1025', () => {
    expect(keyProblem('k'.repeat(maxKeyBytes))).toBeUndefined();
    expect(keyProblem('k'.repeat(maxKeyBytes + 1))).toMatch(/at most 1024 bytes/);
  });

  it('throws a KvError with code InvalidKey naming the backend', () => {
    try {
      assertValidKey('bad key', 'test');
      expect.fail('accepted an invalid key');
    } catch (error) {
      expect(KvError.is(error, 'InvalidKey')).toBe(true);
      expect((error as KvError).backend).toBe('test');
      expect((error as KvError).message).toContain("'bad key'");
    }
  });

  test.prop([validKey, validKey])('a prefix matches whole tokens only', (prefix, rest) => {
    expect(keyMatchesPrefix(prefix, prefix)).toBe(true);
    expect(keyMatchesPrefix(`${prefix}.${rest}`, prefix)).toBe(true);
    expect(keyMatchesPrefix(`${prefix}${rest}`, prefix)).toBe(false);
  });

  it('merges prefixes covered by another and refuses an empty list', () => {
    expect(normalizePrefixes(['a.b', 'a', 'c', 'a.b.c', 'c'], 'test')).toEqual(['a', 'c']);
    expect(normalizePrefixes(undefined, 'test')).toBeUndefined();
    expect(() => normalizePrefixes([], 'test')).toThrow(/non-empty/);
  });
});
