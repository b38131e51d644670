/**
 * Tracing hooks: `node:diagnostics_channel` TracingChannels the packages
 * publish on (names and payloads in docs/guides/observability.md). With no
 * subscriber an operation runs as it would without them: one property read.
 */
import type { TracingChannel } from 'node:diagnostics_channel';
import { tracingChannel } from '#platform';

/** A tracing channel with its context type. */
export type WeftTracingChannel<Context extends object> = TracingChannel<unknown, Context>;

/** The tracing channel `name` (see docs/guides/observability.md for the names). */
export function weftChannel<Context extends object>(name: string): WeftTracingChannel<Context> {
  return tracingChannel<unknown, Context>(name);
}

/**
 * Runs `run` traced on `channel` when it has subscribers (start, end,
 * asyncStart, asyncEnd, and error with `context.error`; `context.result`
 * holds the result); otherwise calls it directly. A runtime whose channels
 * cannot say whether they have subscribers (Bun) traces every call.
 */
export function traced<Context extends object, Result>(
  channel: WeftTracingChannel<Context>,
  context: () => Context,
  run: () => Promise<Result>,
): Promise<Result> {
  // Bun's TracingChannel has no `hasSubscribers` (undefined): there, every operation is traced.
  return channel.hasSubscribers === false ? run() : channel.tracePromise(run, context());
}

/** The handlers of a traced operation; give only the ones you need. */
export interface WeftTraceHandlers<Context extends object> {
  /** The operation starts: `context` is its context, the same object in every later event. */
  start?(context: Context): void;
  /** The synchronous part returned. */
  end?(context: Context): void;
  /** The promise settled; `result` or `error` is set. */
  asyncStart?(context: Context & { result?: unknown; error?: unknown }): void;
  /** After `asyncStart`: where a span ends. */
  asyncEnd?(context: Context & { result?: unknown; error?: unknown }): void;
  /** The operation failed (before `asyncStart`); `error` is the error thrown. */
  error?(context: Context & { error: unknown }): void;
}

const nothing = (): void => undefined;

/**
 * Subscribes `handlers` to a tracing channel with their context types; the
 * handlers not given do nothing. Returns the function that unsubscribes them.
 */
export function subscribeTrace<Context extends object>(
  channel: WeftTracingChannel<Context>,
  handlers: WeftTraceHandlers<Context>,
): () => void {
  type Any = (message: unknown) => void;
  const full = {
    start: (handlers.start ?? nothing) as Any,
    end: (handlers.end ?? nothing) as Any,
    asyncStart: (handlers.asyncStart ?? nothing) as Any,
    asyncEnd: (handlers.asyncEnd ?? nothing) as Any,
    error: (handlers.error ?? nothing) as Any,
  };
  channel.subscribe(full as Parameters<WeftTracingChannel<Context>['subscribe']>[0]);
  return () => {
    channel.unsubscribe(full as Parameters<WeftTracingChannel<Context>['unsubscribe']>[0]);
  };
}
