/**
 * A vitest reporter that keeps a file listing the tests running right now
 * (file and name, with when each started), when `WEFT_RUNNING_TESTS_FILE`
 * names it. `.ci/run` prints that file when its time limit ends a hung run, so
 * the run says which test hung instead of only that it stopped.
 */
import { writeFileSync } from 'node:fs';
import { relative } from 'node:path';
import type { Reporter, TestCase, TestModule } from 'vitest/node';

const root = new URL('..', import.meta.url).pathname;

export default class RunningTestsReporter implements Reporter {
  readonly #file = process.env.WEFT_RUNNING_TESTS_FILE;
  readonly #running = new Map<string, string>();

  onTestModuleStart(module: TestModule): void {
    this.#set(`${relative(root, module.moduleId)} (loading or in hooks)`, true);
  }

  onTestModuleEnd(module: TestModule): void {
    this.#set(`${relative(root, module.moduleId)} (loading or in hooks)`, false);
  }

  onTestCaseReady(test: TestCase): void {
    this.#set(this.#name(test), true);
  }

  onTestCaseResult(test: TestCase): void {
    this.#set(this.#name(test), false);
  }

  #name(test: TestCase): string {
    return `${relative(root, test.module.moduleId)} > ${test.fullName}`;
  }

  #set(name: string, running: boolean): void {
    if (this.#file === undefined) return;
    if (running) this.#running.set(name, new Date().toISOString());
    else this.#running.delete(name);
    const lines = [...this.#running].map(([test, since]) => `${since}  ${test}`);
    writeFileSync(this.#file, lines.length === 0 ? '' : `${lines.join('\n')}\n`);
  }
}
