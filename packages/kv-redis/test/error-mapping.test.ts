/**
 * Errors of the Redis clients as weft reports them: the node-redis cluster
 * client's TypeError while it rediscovers its slots (seen when every master
 * of a Redis Cluster restarted at once: a running watch failed with
 * OperationFailed) is NotConnected and retryable, since nothing was sent;
 * any other TypeError stays OperationFailed.
 */
import { KvErrorCode } from '@weft/kv';
import { describe, expect, it } from 'vitest';
import { toKvError } from '../src/errors.js';

describe('redis client errors', () => {
  it("node-redis's slot-table TypeError during rediscovery is NotConnected and retryable; another TypeError is OperationFailed", () => {
    const rediscovering = new TypeError("Cannot read properties of undefined (reading 'master')");
    rediscovering.stack = `${rediscovering.message}\n    at RedisClusterSlots.getClient (node_modules/@redis/client/dist/lib/cluster/cluster-slots.js:802:40)`;
    const mapped = toKvError(rediscovering, 'watch', undefined, false);
    expect(mapped.code).toBe(KvErrorCode.NotConnected);
    expect(mapped.retryable).toBe(true);
    const write = toKvError(rediscovering, 'put', 'k', true);
    expect(write.code).toBe(KvErrorCode.NotConnected);
    const other = new TypeError("Cannot read properties of undefined (reading 'length')");
    expect(toKvError(other, 'watch', undefined, false).code).toBe(KvErrorCode.OperationFailed);
  });
});
