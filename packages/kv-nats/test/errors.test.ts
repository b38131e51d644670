/**
 * How nats.js failures map to typed errors, for the answers a cluster gives
 * while it recovers: each must be retryable where nothing was applied, so a
 * caller (and a running watch) retries instead of giving up.
 */
import { JetStreamApiError } from '@nats-io/jetstream';
import { KvErrorCode } from '@weft/kv';
import { describe, expect, it } from 'vitest';
import { toKvError } from '../src/errors.js';

describe('nats errors', () => {
  it('JetStream "temporarily unavailable" (503, 10008: a cluster electing its meta leader) is NotConnected and retryable', () => {
    const answer = new JetStreamApiError({ code: 503, err_code: 10008, description: 'JetStream system temporarily unavailable' });
    for (const isWrite of [false, true]) {
      const error = toKvError(answer, 'open', undefined, isWrite);
      expect(error.code).toBe(KvErrorCode.NotConnected);
      expect(error.retryable).toBe(true);
    }
  });

  it('a stream the meta leader cannot place while it counts a node offline (10005, after a heal) is retryable', () => {
    const answer = new JetStreamApiError({ code: 400, err_code: 10005, description: 'no suitable peers for placement, peer offline' });
    const error = toKvError(answer, 'open', undefined, false);
    expect(error.code).toBe(KvErrorCode.OperationFailed);
    expect(error.retryable).toBe(true);
    expect(error.message).toContain('cannot place the stream now');
  });

  it('a refusal that is not transient stays OperationFailed and not retryable', () => {
    const answer = new JetStreamApiError({ code: 400, err_code: 10052, description: 'invalid request' });
    const error = toKvError(answer, 'put', 'k', true);
    expect(error.code).toBe(KvErrorCode.OperationFailed);
    expect(error.retryable).toBe(false);
  });
});
