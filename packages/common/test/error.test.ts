import { WeftError } from '@weft/common';
import { EventLogError } from '@weft/eventlog';
import { KvError, KvErrorCode } from '@weft/kv';
import { kvError } from '@weft/kv/backend';
import { SyncError } from '@weft/sync';
import { describe, expect, it } from 'vitest';

describe('the shared error base', () => {
  it('gives every package error a code, retryable and cause, and tells the classes apart', () => {
    const cause = new Error('native');
    const kv = kvError(KvErrorCode.Timeout, 'redis', 'no answer', { key: 'a.b', cause });
    expect(kv).toBeInstanceOf(KvError);
    expect(kv).toBeInstanceOf(WeftError);
    expect(kv).toBeInstanceOf(Error);
    expect(kv).not.toBeInstanceOf(SyncError);
    expect([kv.code, kv.retryable, kv.cause, kv.backend, kv.key, kv.name]).toEqual(['Timeout', true, cause, 'redis', 'a.b', 'KvError']);
    expect(kv.message).toBe("[redis] key 'a.b': no answer");
    const log = new EventLogError('Corrupt', 'bad frame', { segment: '00000001.seg', offset: 12 });
    expect(log).toBeInstanceOf(WeftError);
    expect(log).not.toBeInstanceOf(KvError);
    expect([log.retryable, log.segment, log.offset]).toEqual([false, '00000001.seg', 12]);
    const sync = new SyncError('Forged', 'bad signature', { device: 'd1', seq: 4 });
    expect(SyncError.is(sync, 'Forged')).toBe(true);
    expect(SyncError.is(sync, 'ChainBroken')).toBe(false);
    expect(KvError.is(sync)).toBe(false);
    expect(WeftError.is(sync)).toBe(true);
  });

  it('recognises an error made by another copy of a package (a duplicated install) by its brand', () => {
    const foreign = Object.assign(new Error('from another copy'), { code: 'Closed' });
    Object.defineProperty(foreign, Symbol.for('@weft/kv/KvError'), { value: true });
    expect(foreign).toBeInstanceOf(KvError);
    expect(KvError.is(foreign, 'Closed')).toBe(true);
    expect(foreign).not.toBeInstanceOf(EventLogError);
  });
});
