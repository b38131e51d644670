import { cpSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { kvConformanceChecks } from './describe.js';
import type { ConformanceCheck, KvConformanceHarness } from './harness.js';
import { findFailingCheck } from './runner.js';

/** One deliberate bug in a package's source: `find` must occur exactly once in `file`, and becomes `replace`. */
export interface SourceMutant {
  /** What a backend author got wrong, in one line. */
  readonly name: string;
  /** Path under the package's `src/`, e.g. `scripts.ts`. */
  readonly file: string;
  readonly find: string;
  readonly replace: string;
  /**
   * Words from the name of the check meant to catch it: checks whose name
   * contains them run first, so a mutant a clause check catches does not
   * wait for the whole suite. Any check failing still counts as the catch.
   */
  readonly firstCheck?: string | undefined;
}

let mutantCounter = 0;

/**
 * Writes a copy of `srcDir` with `mutant` applied into a git-ignored
 * `.mutants/` folder beside it and returns the path of the copy's
 * `index.ts`, for a dynamic `import()`; `remove()` deletes the copy. Throws
 * when `find` does not occur exactly once, so a mutant that no longer
 * applies to the source fails loudly instead of testing nothing.
 */
export function writeMutant(srcDir: string, mutant: SourceMutant): { entry: string; remove: () => void } {
  const original = readFileSync(join(srcDir, mutant.file), 'utf8');
  const occurrences = original.split(mutant.find).length - 1;
  if (occurrences !== 1) {
    throw new Error(`mutant "${mutant.name}": its text occurs ${occurrences} times in ${mutant.file}, not once; update the mutant`);
  }
  const root = join(dirname(srcDir), '.mutants');
  const dir = join(root, `m${process.pid}-${++mutantCounter}`);
  mkdirSync(dir, { recursive: true });
  for (const name of readdirSync(srcDir)) cpSync(join(srcDir, name), join(dir, name), { recursive: true });
  writeFileSync(join(dir, mutant.file), original.replace(mutant.find, mutant.replace));
  return { entry: join(dir, 'index.ts'), remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Options of {@link describeKvMutants}. */
export interface KvMutantsOptions<Module> {
  /** The backend package's `src/` directory; each mutant is applied to a copy of it. */
  readonly srcDir: string;
  /** Why the mutants cannot run here (a missing server), to skip them with that reason. */
  readonly skip?: string | undefined;
  /** Runs once before the mutants (e.g. start a server). */
  readonly setup?: (() => Promise<void>) | undefined;
  readonly teardown?: (() => Promise<void>) | undefined;
  /** The conformance harness on the mutated copy's module (its `index.ts`, imported). */
  readonly harness: (module: Module) => KvConformanceHarness;
  /** The backend's own clause checks on the mutated copy's module, run after the suite's (clauses only this backend has). */
  readonly extraChecks?: ((module: Module) => readonly ConformanceCheck[]) | undefined;
}

/**
 * Proves the conformance suite catches realistic bugs in a backend's own
 * source: one test per mutant applies it to a copy of `srcDir`, imports the
 * copy and runs the suite until a check fails; the test fails when none
 * does. After the run it prints the catch rate and the check that caught
 * each mutant.
 */
export function describeKvMutants<Module>(name: string, mutants: readonly SourceMutant[], options: KvMutantsOptions<Module>): void {
  describe.skipIf(options.skip !== undefined)(`${name} mutants${options.skip === undefined ? '' : ` (${options.skip})`}`, () => {
    const caught: string[] = [];
    beforeAll(async () => options.setup?.(), 120_000);
    afterAll(async () => {
      console.log(`[${name} mutants] caught ${caught.length} of ${mutants.length}:\n${caught.join('\n')}`);
      await options.teardown?.();
    }, 60_000);
    for (const mutant of mutants) {
      it(`catches: ${mutant.name}`, async () => {
        const copy = writeMutant(options.srcDir, mutant);
        try {
          const module = (await import(pathToFileURL(copy.entry).href)) as Module;
          const checks = [...kvConformanceChecks, ...(options.extraChecks?.(module) ?? [])];
          const first = mutant.firstCheck;
          const failing = await findFailingCheck(
            first === undefined
              ? checks
              : [...checks.filter((check) => check.name.includes(first)), ...checks.filter((check) => !check.name.includes(first))],
            { watchDeadlineMs: 3000, ...options.harness(module) },
            {
              propertyRuns: 50,
              seed: 42,
              linearizabilityHistories: 20,
              log: () => undefined,
            },
          );
          expect(failing, `no conformance check failed on the mutant "${mutant.name}"`).toBeDefined();
          caught.push(`  ${mutant.name}: caught by "${failing?.check.group}: ${failing?.check.name}"`);
        } finally {
          copy.remove();
        }
      }, 300_000);
    }
  });
}

/** A named check of a package's behaviour, run on a mutated copy of its module: it throws when the behaviour breaks. */
export interface SourceCheck<Module> {
  readonly name: string;
  readonly run: (module: Module) => Promise<void>;
}

/** Options of {@link describeSourceMutants}. */
export interface SourceMutantsOptions<Module> {
  /** The package's `src/` directory; each mutant is applied to a copy of it. */
  readonly srcDir: string;
  /** The checks, run in order on each mutant until one fails. */
  readonly checks: readonly SourceCheck<Module>[];
  /** Why the mutants cannot run here, to skip them with that reason. */
  readonly skip?: string | undefined;
  /** Per-mutant timeout in milliseconds. @default 300000 */
  readonly timeoutMs?: number;
}

/**
 * The same proof as {@link describeKvMutants} for any package: one test per
 * mutant applies it to a copy of `srcDir`, imports the copy's `index.ts`
 * and runs `checks` on it until one fails; the test fails when none does.
 * The catch rate and the check that caught each mutant are printed.
 */
export function describeSourceMutants<Module>(name: string, mutants: readonly SourceMutant[], options: SourceMutantsOptions<Module>): void {
  describe.skipIf(options.skip !== undefined)(`${name} mutants${options.skip === undefined ? '' : ` (${options.skip})`}`, () => {
    const caught: string[] = [];
    afterAll(() => {
      console.log(`[${name} mutants] caught ${caught.length} of ${mutants.length}:\n${caught.join('\n')}`);
    });
    // Without this, a check that always fails would "catch" every mutant.
    it(
      'every check passes on the source as it is',
      async () => {
        const module = (await import(pathToFileURL(join(options.srcDir, 'index.ts')).href)) as Module;
        for (const check of options.checks) await check.run(module);
      },
      options.timeoutMs ?? 300_000,
    );
    for (const mutant of mutants) {
      it(
        `catches: ${mutant.name}`,
        async () => {
          const copy = writeMutant(options.srcDir, mutant);
          try {
            const module = (await import(pathToFileURL(copy.entry).href)) as Module;
            let failed: string | undefined;
            for (const check of options.checks) {
              try {
                await check.run(module);
              } catch {
                failed = check.name;
                break;
              }
            }
            expect(failed, `no check failed on the mutant "${mutant.name}"`).toBeDefined();
            caught.push(`  ${mutant.name}: caught by "${failed}"`);
          } finally {
            copy.remove();
          }
        },
        options.timeoutMs ?? 300_000,
      );
    }
  });
}
