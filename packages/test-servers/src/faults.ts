import type { Link } from './link.js';
import type { ServerControls, ServerProcess } from './process.js';

/** One way a server fails, shaped as `@weft/kv-testkit`'s `KvFault`. */
export interface ServerFault {
  readonly name: string;
  readonly outcome: 'continues' | 'expires';
  readonly unanswered?: boolean;
  inject(): Promise<void>;
  heal(): Promise<void>;
}

/** What {@link serverFaults} acts on: a server, and the link its clients connect through. */
export interface FaultTarget {
  readonly server: ServerControls & { readonly process: ServerProcess };
  readonly link: Link;
}

/**
 * The faults every backend's fault group runs on one server reached
 * through a {@link Link}: a graceful restart, kill -9, SIGSTOP, every
 * connection reset, a partition, and a kill -9 that loses the data. The
 * target is read when a fault runs (servers start in a suite's setup).
 *
 * @param options.persistence how the server keeps its data, named in the fault names (e.g. `AOF`)
 * @param options.afterDataLost what the deployment does after losing the store, and its words (a NATS bucket is made again)
 */
export function serverFaults(
  target: () => FaultTarget,
  options: { readonly persistence?: string; readonly afterDataLost?: { readonly name: string; run(): Promise<void> } } = {},
): ServerFault[] {
  const kept = options.persistence === undefined ? '' : ` (${options.persistence})`;
  return [
    {
      name: `graceful restart${kept}`,
      outcome: 'continues',
      inject: () => target().server.process.stop(),
      heal: () => target().server.process.start(),
    },
    {
      name: `kill -9 and restart${kept}`,
      outcome: 'continues',
      inject: () => target().server.kill(),
      heal: () => target().server.process.start(),
    },
    {
      name: 'SIGSTOP, then SIGCONT',
      outcome: 'continues',
      unanswered: true,
      inject: () => target().server.pause(),
      heal: async () => target().server.resume(),
    },
    {
      name: 'every connection reset',
      outcome: 'continues',
      inject: async () => target().link.reset(),
      heal: async () => undefined,
    },
    {
      name: 'a partition between clients and server, then healed',
      outcome: 'continues',
      unanswered: true,
      inject: async () => target().link.partition(),
      heal: async () => target().link.heal(),
    },
    {
      name: `kill -9 and restart with the data lost${options.afterDataLost === undefined ? '' : `, ${options.afterDataLost.name}`}`,
      outcome: 'expires',
      inject: () => target().server.kill(),
      heal: async () => {
        await target().server.restartEmpty();
        await options.afterDataLost?.run();
      },
    },
  ];
}
