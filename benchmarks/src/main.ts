/**
 * The benchmark runner: `npm run bench [-- --quick] [SUITE...]`.
 *
 * Runs each suite in a child process of its own (so peak RSS is per suite),
 * shows progress, and writes `results/<suite>.json`, `results/REPORT.md` and
 * SVG charts. `--quick` is a seconds-long smoke run that writes to
 * `results/quick/` and keeps the committed results untouched.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { SuiteResult } from './harness.js';
import { writeReport } from './report.js';
import { suites } from './suites/index.js';

const args = process.argv.slice(2);
if (args.includes('--help') || args.includes('-h')) {
  process.stdout.write(
    `usage: npm run bench [-- --quick] [SUITE...]\n  suites: ${suites.map((suite) => suite.name).join(', ')}\n  --quick  a seconds-long smoke run (results/quick/)\n  --report only rewrite REPORT.md and the charts from the last results\n  WEFT_BENCH_DIR: where logs are written (default: the system temp dir)\n  WEFT_BENCH_MAX_KEYS: the largest bucket of the scaling suite (default 1000000)\n`,
  );
  process.exit(0);
}
const quick = args.includes('--quick');
const reportOnly = args.includes('--report');
const unknown = args.filter((arg) => arg.startsWith('-') && arg !== '--quick' && arg !== '--report');
const names = args.filter((arg) => !arg.startsWith('-'));
const invalid = names.filter((name) => !suites.some((suite) => suite.name === name));
if (unknown.length > 0 || invalid.length > 0) {
  process.stderr.write(`bench: unknown ${[...unknown, ...invalid].join(', ')}; suites: ${suites.map((suite) => suite.name).join(', ')}\n`);
  process.exit(2);
}
const selected = reportOnly ? [] : names.length === 0 ? suites : suites.filter((suite) => names.includes(suite.name));
const resultsDir = fileURLToPath(new URL(quick ? '../results/quick/' : '../results/', import.meta.url));
mkdirSync(resultsDir, { recursive: true });
const runner = fileURLToPath(new URL('./run-suite.js', import.meta.url));

let failed = 0;
const started = Date.now();
for (const [index, suite] of selected.entries()) {
  process.stderr.write(`== ${index + 1}/${selected.length} ${suite.title}${quick ? ' (quick)' : ''}\n`);
  const code = await new Promise<number>((resolve) => {
    const child = spawn(
      process.execPath,
      ['--expose-gc', runner, suite.name, `${resultsDir}${suite.name}.json`, ...(quick ? ['--quick'] : [])],
      {
        stdio: ['ignore', 'inherit', 'inherit'],
      },
    );
    child.on('exit', (exit) => resolve(exit ?? 1));
  });
  if (code !== 0) {
    failed++;
    process.stderr.write(`== ${suite.name} failed (exit ${code})\n`);
  }
}

// The report covers every suite with a result in the directory, so running one suite refreshes its section.
const results: SuiteResult[] = suites
  .filter((suite) => existsSync(`${resultsDir}${suite.name}.json`))
  .map((suite) => JSON.parse(readFileSync(`${resultsDir}${suite.name}.json`, 'utf8')) as SuiteResult);
const titles = Object.fromEntries(suites.map((suite) => [suite.name, suite.title]));
writeReport(resultsDir, results, titles, `npm run bench${quick ? ' -- --quick' : ''}`);
process.stderr.write(
  `== ${selected.length - failed} of ${selected.length} suites done in ${((Date.now() - started) / 1000).toFixed(0)} s; report: ${resultsDir}REPORT.md\n`,
);
process.exit(failed === 0 ? 0 : 1);
