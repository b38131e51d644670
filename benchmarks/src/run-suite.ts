/**
 * Runs one suite in this process and writes its result as JSON: the parent
 * runs each suite in a child of its own, so peak RSS is per suite.
 *
 * Usage: node run-suite.js SUITE OUTPUT.json [--quick]
 */
import { writeFileSync } from 'node:fs';
import { cpus, platform, release } from 'node:os';
import { Bench, type SuiteResult } from './harness.js';
import { suites } from './suites/index.js';

const [name, output, ...flags] = process.argv.slice(2);
const suite = suites.find((candidate) => candidate.name === name);
if (suite === undefined || output === undefined) {
  process.stderr.write(`usage: run-suite SUITE OUTPUT.json [--quick]; suites: ${suites.map((s) => s.name).join(', ')}\n`);
  process.exit(2);
}
const quick = flags.includes('--quick');
const bench = new Bench(suite.name, quick);
const startedAt = new Date();
const environment = {
  node: process.version,
  platform: `${platform()} ${release()}`,
  cpu: `${cpus()[0]?.model ?? 'unknown'} x${cpus().length}`,
};
const missing = suite.missing?.();
if (missing !== undefined) bench.progress.done(`skipped: ${missing}`);
else await suite.run(bench);
const result: SuiteResult = {
  suite: suite.name,
  quick,
  startedAt: startedAt.toISOString(),
  durationMs: Date.now() - startedAt.getTime(),
  peakRssMb: Math.round(process.resourceUsage().maxRSS / 1024),
  figures: bench.figures,
  curves: bench.curves,
  notes: bench.notes,
  environment,
  ...(missing === undefined ? {} : { skipped: missing }),
};
writeFileSync(output, `${JSON.stringify(result, null, 2)}\n`);
process.exit(0);
