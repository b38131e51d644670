/** Causal walks over the parents events name: ancestors (following parents) and descendants (following children). */
import type { EventId } from './ids.js';
import type { CausalWalk, LogEvent } from './types.js';

type Lookup = (id: EventId) => Promise<LogEvent | undefined>;

/** Every ancestor of `start` in the log, in position order, and the parents referenced but not in the log. */
export async function ancestorsOf(start: LogEvent, get: Lookup): Promise<CausalWalk> {
  const seen = new Set<string>([start.id]);
  const missing = new Set<EventId>();
  const events: LogEvent[] = [];
  let frontier: readonly EventId[] = start.parents;
  while (frontier.length > 0) {
    const next: EventId[] = [];
    for (const parent of frontier) {
      if (seen.has(parent)) continue;
      seen.add(parent);
      const event = await get(parent);
      if (event === undefined) missing.add(parent);
      else {
        events.push(event);
        next.push(...event.parents);
      }
    }
    frontier = next;
  }
  return { events: events.sort((a, b) => a.position - b.position), missing: [...missing] };
}

/** Every event that has `id` among its ancestors, in position order; `children` maps a parent id to the ids naming it. */
export async function descendantsOf(id: EventId, children: ReadonlyMap<string, readonly EventId[]>, get: Lookup): Promise<CausalWalk> {
  const seen = new Set<string>([id]);
  const events: LogEvent[] = [];
  let frontier = [id];
  while (frontier.length > 0) {
    const next: EventId[] = [];
    for (const parent of frontier) {
      for (const child of children.get(parent) ?? []) {
        if (seen.has(child)) continue;
        seen.add(child);
        const event = await get(child);
        if (event !== undefined) {
          events.push(event);
          next.push(child);
        }
      }
    }
    frontier = next;
  }
  return { events: events.sort((a, b) => a.position - b.position), missing: [] };
}
