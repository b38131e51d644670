import { Deadlines, readTimeout, writeTimeout } from '@weft/kv/backend';
import { describe, expect, it } from 'vitest';

const never = () => new Promise<never>(() => undefined);

describe('Deadlines', () => {
  it('gives up on work that never settles: Timeout for a read, Indeterminate for a write', async () => {
    const deadlines = new Deadlines(100);
    const read = deadlines.within(never(), () => readTimeout('test', 'get', 100, 'a'));
    const write = deadlines.within(never(), () => writeTimeout('test', 'put', 100, 'a'));
    await expect(read).rejects.toMatchObject({ code: 'Timeout', retryable: true, key: 'a' });
    await expect(write).rejects.toMatchObject({ code: 'Indeterminate', retryable: false, key: 'a' });
    expect(deadlines.pending).toBe(0);
  });

  it('passes on what the work settles with, and forgets it at once', async () => {
    const deadlines = new Deadlines(60_000);
    await expect(deadlines.within(Promise.resolve(7), () => readTimeout('test', 'get', 1, undefined))).resolves.toBe(7);
    const failure = new Error('refused');
    await expect(deadlines.within(Promise.reject(failure), () => readTimeout('test', 'get', 1, undefined))).rejects.toBe(failure);
    expect(deadlines.pending).toBe(0);
    deadlines.close();
  });

  it('expires every stuck step among many that settle, in the order they were set', async () => {
    const deadlines = new Deadlines(50);
    const expired: number[] = [];
    const steps = Array.from({ length: 200 }, (_, index) =>
      deadlines
        .within(index % 3 === 0 ? never() : Promise.resolve(index), () => readTimeout('test', `step ${index}`, 50, undefined))
        .then(
          () => undefined,
          () => void expired.push(index),
        ),
    );
    await Promise.all(steps);
    expect(expired).toEqual(Array.from({ length: 67 }, (_, index) => index * 3));
    expect(deadlines.pending).toBe(0);
  });
});
