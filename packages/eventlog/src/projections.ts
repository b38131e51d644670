/**
 * Projections: events folded with a reducer, the whole log's or one
 * entity's. With a cache key, the folded state and the position it covers
 * are kept, and the next fold reads only newer events; the cache is dropped
 * when the event at its position no longer has the same hash (the log it
 * was computed from is not this one).
 */

import type { LogEvent } from './types.js';
import { equalBytes } from './util.js';

/** What a projection reads of a log. */
export interface ProjectionSource {
  at(position: number): Promise<LogEvent | undefined>;
  read(fromPosition?: number): AsyncIterable<LogEvent>;
  readEntity(entity: string, fromSequence?: number): AsyncIterable<LogEvent>;
}

export class Projections {
  readonly #cache = new Map<string, { position: number; hash: Uint8Array; state: unknown }>();

  async project<State>(
    log: ProjectionSource,
    options: { entity?: string; filter?: (event: LogEvent) => boolean; cacheKey?: string },
    reducer: (state: State, event: LogEvent) => State,
    initial: State,
  ): Promise<{ state: State; position: number }> {
    let state = initial;
    let from = 1;
    const cached = options.cacheKey === undefined ? undefined : this.#cache.get(options.cacheKey);
    if (cached !== undefined) {
      const anchor = await log.at(cached.position);
      if (anchor !== undefined && equalBytes(anchor.hash, cached.hash)) {
        state = cached.state as State;
        from = cached.position + 1;
      } else {
        this.#cache.delete(options.cacheKey as string);
      }
    }
    let last: LogEvent | undefined;
    const source = options.entity === undefined ? log.read(from) : entityFrom(log, options.entity, from);
    for await (const event of source) {
      last = event;
      if (options.filter !== undefined && !options.filter(event)) continue;
      state = reducer(state, event);
    }
    const position = last?.position ?? (from > 1 ? from - 1 : 0);
    if (options.cacheKey !== undefined && last !== undefined) {
      this.#cache.set(options.cacheKey, { position: last.position, hash: last.hash, state });
    }
    return { state, position };
  }

  /** Drops cached states (all, or one key). */
  invalidate(cacheKey?: string): void {
    if (cacheKey === undefined) this.#cache.clear();
    else this.#cache.delete(cacheKey);
  }
}

async function* entityFrom(log: ProjectionSource, entity: string, fromPosition: number): AsyncGenerator<LogEvent> {
  for await (const event of log.readEntity(entity)) if (event.position >= fromPosition) yield event;
}
