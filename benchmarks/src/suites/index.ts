import type { Bench } from '../harness.js';
import { browserMissing, browserSuite } from './browser.js';
import { cliSuite } from './cli.js';
import { eventlogSuite } from './eventlog.js';
import { memorySuite } from './memory.js';
import { natsMissing, natsSuite } from './nats.js';
import { redisMissing, redisSuite } from './redis.js';
import { scalingSuite } from './scaling.js';
import { syncSuite } from './sync.js';

export interface Suite {
  readonly name: string;
  readonly title: string;
  /** Why it cannot run here, if it cannot. */
  readonly missing?: () => string | undefined;
  readonly run: (bench: Bench) => Promise<void>;
}

export const suites: readonly Suite[] = [
  { name: 'memory', title: 'Memory backend', run: memorySuite },
  { name: 'redis', title: 'Redis: weft against raw ioredis', missing: redisMissing, run: redisSuite },
  {
    name: 'nats',
    title: 'NATS (system line, 2.9): weft against raw @nats-io/kv',
    missing: natsMissing('system'),
    run: natsSuite('system'),
  },
  {
    name: 'nats-current',
    title: 'NATS (current line, 2.15): weft against raw @nats-io/kv',
    missing: natsMissing('current'),
    run: natsSuite('current'),
  },
  { name: 'eventlog', title: 'Event log against the disk and the crypto libraries', run: eventlogSuite },
  { name: 'sync', title: 'Sync through Redis and NATS', run: syncSuite },
  { name: 'scaling', title: 'Scaling curves', run: scalingSuite },
  { name: 'cli', title: 'The weft command: start to exit', run: cliSuite },
  { name: 'browser', title: 'weft in headless Chromium against weft on Node.js', missing: browserMissing, run: browserSuite },
];
