/**
 * Tracing hooks: `node:diagnostics_channel` TracingChannels the packages
 * publish on (names and payloads in docs/guides/observability.md). With no
 * subscriber an operation runs as it would without them: one property read.
 */
import { type TracingChannel, tracingChannel } from 'node:diagnostics_channel';

/** A tracing channel with its context type. */
export type WeftTracingChannel<Context extends object> = TracingChannel<unknown, Context>;

/** The tracing channel `name` (see docs/guides/observability.md for the names). */
export function weftChannel<Context extends object>(name: string): WeftTracingChannel<Context> {
  return tracingChannel<unknown, Context>(name);
}

/**
 * Runs `run` traced on `channel` when it has subscribers (start, end,
 * asyncStart, asyncEnd, and error with `context.error`; `context.result`
 * holds the result); otherwise calls it directly.
 */
export function traced<Context extends object, Result>(
  channel: WeftTracingChannel<Context>,
  context: () => Context,
  run: () => Promise<Result>,
): Promise<Result> {
  return channel.hasSubscribers ? channel.tracePromise(run, context()) : run();
}
