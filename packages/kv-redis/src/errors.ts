import { KvError, KvErrorCode } from '@weft/kv';
import { kvError } from '@weft/kv/backend';

export const backend = 'redis';

/** node-redis failures by class (its errors keep the name `Error`): the command was never sent. */
const nodeRedisUnsent = new Set(['ClientClosedError', 'ClientOfflineError']);
/** node-redis failures of a command that may have been sent: the connection dropped or the reply timed out. */
const nodeRedisUnanswered = new Set([
  'SocketClosedUnexpectedlyError',
  'DisconnectsClientError',
  'TimeoutError',
  'SocketTimeoutError',
  'SocketTimeoutDuringMaintenanceError',
  'CommandTimeoutDuringMaintenanceError',
]);
const nodeRedisUnreachable = new Set(['ConnectionTimeoutError', 'ReconnectStrategyError', 'RootNodesUnavailableError']);
/** Socket errors that can cut a command after it was written. */
const droppedSocket = new Set(['ECONNRESET', 'EPIPE', 'ECONNABORTED']);

/** Maps an ioredis or node-redis failure to a typed error; a write whose reply was lost is `Indeterminate`. */
export function toKvError(error: unknown, operation: string, key: string | undefined, isWrite: boolean): KvError {
  if (error instanceof KvError) return error;
  const name = error instanceof Error ? error.name : '';
  const className = error instanceof Error ? error.constructor.name : '';
  const message = (error instanceof Error ? error.message : String(error)) || className;
  const code = (error as { code?: string } | undefined)?.code;
  const extra = { key, cause: error };
  if (nodeRedisUnsent.has(className)) {
    return kvError(KvErrorCode.NotConnected, backend, `${operation}: not connected to Redis (${message})`, extra);
  }
  if (nodeRedisUnanswered.has(className) || (code !== undefined && droppedSocket.has(code))) {
    if (isWrite) return indeterminate(operation, extra);
    const timedOut = className.includes('Timeout');
    return kvError(timedOut ? KvErrorCode.Timeout : KvErrorCode.NotConnected, backend, `${operation}: ${message}`, extra);
  }
  if (nodeRedisUnreachable.has(className)) {
    return kvError(KvErrorCode.ConnectionFailed, backend, `${operation}: cannot reach Redis (${message})`, extra);
  }
  if (className === 'MaxCommandRedirectionsError') {
    return kvError(KvErrorCode.NotConnected, backend, `${operation}: the cluster is moving slots (${message})`, extra);
  }
  if (name === 'MaxRetriesPerRequestError' || message.includes("Stream isn't writeable") || message.includes('enableOfflineQueue')) {
    return kvError(KvErrorCode.NotConnected, backend, `${operation}: not connected to Redis (${message})`, extra);
  }
  if (message.includes('Connection is closed') || message.includes('Command timed out')) {
    if (isWrite) return indeterminate(operation, extra);
    return kvError(
      message.includes('timed out') ? KvErrorCode.Timeout : KvErrorCode.NotConnected,
      backend,
      `${operation}: ${message}`,
      extra,
    );
  }
  if (code === 'ECONNREFUSED' || code === 'ENOTFOUND' || code === 'ETIMEDOUT' || name === 'ClusterAllFailedError') {
    return kvError(KvErrorCode.ConnectionFailed, backend, `${operation}: cannot reach Redis (${message})`, extra);
  }
  // node-redis's cluster client, while it rediscovers the slots (every master restarted at once), looks up a slot's
  // master in a table it has just emptied and throws a TypeError before sending anything: not sent, try again.
  if (
    error instanceof TypeError &&
    /reading 'master'/.test(message) &&
    /cluster-slots|RedisClusterSlots/.test(String((error as { stack?: unknown }).stack))
  ) {
    return kvError(KvErrorCode.NotConnected, backend, `${operation}: the cluster client is rediscovering its slots (${message})`, {
      ...extra,
      retryable: true,
    });
  }
  // The server refused the command (ioredis wraps a refusal it kept getting in "Too many Cluster redirections"): not
  // applied. A node that turned replica in a failover refuses writes (READONLY) and ends blocked reads (UNBLOCKED).
  if (
    message.startsWith('LOADING') ||
    message.startsWith('READONLY') ||
    message.startsWith('UNBLOCKED') ||
    message.startsWith('CLUSTERDOWN') ||
    message.startsWith('TRYAGAIN') ||
    (message.startsWith('Too many Cluster redirections') && /CLUSTERDOWN|TRYAGAIN|LOADING|MOVED|ASK/.test(message))
  ) {
    return kvError(KvErrorCode.NotConnected, backend, `${operation}: Redis is not ready or changed roles (${message})`, {
      ...extra,
      retryable: true,
    });
  }
  return kvError(KvErrorCode.OperationFailed, backend, `${operation} failed: ${message}`, extra);
}

function indeterminate(operation: string, extra: { key: string | undefined; cause: unknown }): KvError {
  return kvError(
    KvErrorCode.Indeterminate,
    backend,
    `${operation}: the connection dropped before Redis answered; the write may or may not have been applied`,
    extra,
  );
}
