import { KvError, KvErrorCode } from '@weft/kv';
import { kvError } from '@weft/kv/backend';

export const backend = 'redis';

/** Maps an ioredis failure to a typed error; a write whose reply was lost is `Indeterminate`. */
export function toKvError(error: unknown, operation: string, key: string | undefined, isWrite: boolean): KvError {
  if (error instanceof KvError) return error;
  const name = error instanceof Error ? error.name : '';
  const message = error instanceof Error ? error.message : String(error);
  const code = (error as { code?: string } | undefined)?.code;
  const extra = { key, cause: error };
  if (name === 'MaxRetriesPerRequestError' || message.includes("Stream isn't writeable") || message.includes('enableOfflineQueue')) {
    return kvError(KvErrorCode.NotConnected, backend, `${operation}: not connected to Redis (${message})`, extra);
  }
  if (message.includes('Connection is closed') || message.includes('Command timed out')) {
    if (isWrite)
      return kvError(
        KvErrorCode.Indeterminate,
        backend,
        `${operation}: the connection dropped before Redis answered; the write may or may not have been applied`,
        extra,
      );
    return kvError(
      message.includes('timed out') ? KvErrorCode.Timeout : KvErrorCode.NotConnected,
      backend,
      `${operation}: ${message}`,
      extra,
    );
  }
  if (
    code === 'ECONNREFUSED' ||
    code === 'ENOTFOUND' ||
    code === 'ECONNRESET' ||
    code === 'ETIMEDOUT' ||
    name === 'ClusterAllFailedError'
  ) {
    return kvError(KvErrorCode.ConnectionFailed, backend, `${operation}: cannot reach Redis (${message})`, extra);
  }
  if (message.startsWith('LOADING') || message.startsWith('CLUSTERDOWN') || message.startsWith('TRYAGAIN')) {
    return kvError(KvErrorCode.NotConnected, backend, `${operation}: Redis is not ready (${message})`, { ...extra, retryable: true });
  }
  return kvError(KvErrorCode.OperationFailed, backend, `${operation} failed: ${message}`, extra);
}
