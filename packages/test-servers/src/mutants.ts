import { cpSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

/** One deliberate bug in a package's source: `find` must occur exactly once in `file`, and becomes `replace`. */
export interface SourceMutant {
  /** What a backend author got wrong, in one line. */
  readonly name: string;
  /** Path under the package's `src/`, e.g. `scripts.ts`. */
  readonly file: string;
  readonly find: string;
  readonly replace: string;
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
