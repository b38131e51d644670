/**
 * The conformance suite must catch realistic bugs in the clauses
 * `@weft/kv/backend` implements once for every backend (the store front and
 * the watch loop): each mutant below is applied to a copy of this package's
 * source and run with the memory backend on it until the first conformance
 * check fails. Every mutant must be caught; the catch rate and the check
 * that caught each one are printed.
 */
import { fileURLToPath } from 'node:url';
import { describeKvMutants, type SourceMutant } from '@weft/kv-testkit';
import { memoryHarness } from './harness.js';

const srcDir = fileURLToPath(new URL('../src', import.meta.url));

const mutants: SourceMutant[] = [
  {
    name: 'the watch loop marks synced at the head before the listing is delivered',
    file: 'backend/watch-loop.ts',
    find: '          if (!synced && head === undefined) head = item.head;',
    replace:
      '        if (!synced && head === undefined) {\n          head = item.head;\n          if (head !== undefined) yield syncedEvent(undefined);\n        }',
  },
  {
    name: 'the watch loop resumes below the horizon (history gone) without CursorExpired',
    file: 'backend/watch-loop.ts',
    find: '  if (horizon !== undefined && cursors.compare(reading, horizon) < 0) {',
    replace: '  if (false) {',
  },
  {
    name: 'the watch loop filters prefixes as strings, not whole tokens',
    file: 'backend/watch-loop.ts',
    find: '        if (!keyMatchesAnyPrefix(item.key, prefixes)) continue;',
    replace: '      if (prefixes !== undefined && !prefixes.some((prefix) => item.key.startsWith(prefix))) continue;',
  },
  {
    name: 'the store front lets writes through after close',
    file: 'backend/store.ts',
    find: '    try {\n      this.assertOpen();\n      assertValidKey(key, this.backend);\n      const unsupported =',
    replace: '    try {\n      assertValidKey(key, this.backend);\n      const unsupported =',
  },
  {
    name: 'the store front does not check the size of a value',
    file: 'backend/store.ts',
    find: '        assertValue(value, this.capabilities.maxValueBytes, this.backend, key);',
    replace: '',
  },
  {
    name: 'a watch given its own signal does not end when its handle closes',
    file: 'backend/store.ts',
    find: 'const signal = options.signal === undefined ? this.#closing.signal : AbortSignal.any([options.signal, this.#closing.signal]);',
    replace: 'const signal = options.signal ?? this.#closing.signal;',
  },
  {
    name: 'keys() over the listing is not closed with its handle',
    file: 'backend/store.ts',
    find: '            if (step.done === true) break;\n            assertOpen();\n',
    replace: '            if (step.done === true) break;\n',
  },
  {
    name: 'a commit applies each operation before checking the next one (a later failing precondition leaves earlier writes)',
    file: 'memory/driver.ts',
    find: '    for (const mutation of mutations) this.#check(mutation);\n    const versions: Version[] = [];\n    for (const mutation of mutations) versions.push(this.#apply(mutation));',
    replace:
      '    const versions: Version[] = [];\n    for (const mutation of mutations) {\n      this.#check(mutation);\n      versions.push(this.#apply(mutation));\n    }',
  },
  {
    name: "a commit's writes are applied a step apart (another commit's writes interleave with them)",
    file: 'memory/driver.ts',
    find: 'for (const mutation of mutations) versions.push(this.#apply(mutation));',
    replace: 'for (const mutation of mutations) versions.push(await Promise.resolve().then(() => this.#apply(mutation)));',
  },
  {
    name: 'the store front lets a key appear twice in one commit',
    file: 'backend/store.ts',
    find: '      if (keys.has(key))\n',
    replace: '      if (keys.has(key) && false)\n',
  },
];

describeKvMutants<typeof import('@weft/kv')>('kv backend layer (memory)', mutants, {
  srcDir,
  harness: (module) => memoryHarness(module),
});
