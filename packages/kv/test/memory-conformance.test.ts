import * as kv from '@weft/kv';
import { ManualClock } from '@weft/kv';
import { describeKvConformance } from '@weft/kv-testkit';
import { memoryHarness } from './harness.js';

describeKvConformance('memory', memoryHarness(kv));
describeKvConformance('memory (manual clock)', memoryHarness(kv, new ManualClock(Date.UTC(2026, 0, 1))));
