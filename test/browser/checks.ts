/**
 * Checks of `@weft/eventlog` that run in a browser's dedicated worker, driven
 * by test/browser-eventlog.test.ts in headless Chromium: the filesystem seam's
 * contract on OPFS, appends whose durability is attacked by terminating the
 * worker, reading back after such a crash, and the decoder properties
 * (packages/eventlog/test/decoder-properties.ts) under fast-check. Messages:
 * `{ id, method, args }` in, `{ id, result }` or `{ id, error }` out, and
 * `{ acked }` for each append the log reported durable.
 */
import {
  type EventLog,
  EventLogError,
  FileSystemError,
  type LogFileSystem,
  loadHashers,
  openEventLog,
  opfsFileSystem,
} from '@weft/eventlog';
import fc from 'fast-check';
import { crcProperties, frameProperties } from '../../packages/eventlog/test/decoder-properties.js';

const encoder = new TextEncoder();
const decoder = new TextDecoder();

async function code(run: () => Promise<unknown>): Promise<string> {
  try {
    await run();
    return 'ok';
  } catch (error) {
    if (error instanceof FileSystemError || error instanceof EventLogError) return error.code;
    return `${(error as Error).name}: ${(error as Error).message}`;
  }
}

async function readText(fs: LogFileSystem, path: string): Promise<string> {
  const file = await fs.open(path, { readOnly: true });
  try {
    return decoder.decode(await file.read(0, await file.size()));
  } finally {
    await file.close();
  }
}

async function writeText(
  fs: LogFileSystem,
  path: string,
  text: string,
  options: { create?: boolean; exclusive?: boolean } = { create: true },
) {
  const file = await fs.open(path, options);
  try {
    await file.truncate(0);
    await file.write(encoder.encode(text), 0);
    await file.sync();
  } finally {
    await file.close();
  }
}

/** The filesystem seam's contract on OPFS; returns what did not hold. */
async function fsContract(root: string): Promise<{ checks: number; failures: string[] }> {
  const fs = opfsFileSystem();
  const failures: string[] = [];
  let checks = 0;
  const expect = (what: string, actual: unknown, expected: unknown) => {
    checks++;
    if (JSON.stringify(actual) !== JSON.stringify(expected))
      failures.push(`${what}: got ${JSON.stringify(actual)}, expected ${JSON.stringify(expected)}`);
  };
  const dir = `${root}/contract`;
  await fs.mkdir(`${dir}/nested/deeper`);
  await fs.mkdir(dir); // again: succeeds
  expect('mkdir makes parents', await fs.exists(`${dir}/nested/deeper`), true);
  expect('a missing path does not exist', await fs.exists(`${dir}/missing`), false);
  expect('opening a missing file without create', await code(() => fs.open(`${dir}/missing`)), 'ENOENT');
  expect('opening in a missing directory', await code(() => fs.open(`${dir}/nowhere/file`, { create: true })), 'ENOENT');
  expect('readdir of a missing directory', await code(() => fs.readdir(`${dir}/nowhere`)), 'ENOENT');

  await writeText(fs, `${dir}/a`, 'alpha');
  expect('exclusive create of an existing file', await code(() => fs.open(`${dir}/a`, { create: true, exclusive: true })), 'EEXIST');
  expect('a file reads back', await readText(fs, `${dir}/a`), 'alpha');
  expect('readdir lists files and directories, sorted', await fs.readdir(dir), ['a', 'nested']);

  // Positional writes, reads past the end, truncation, growth with zeros.
  const file = await fs.open(`${dir}/b`, { create: true });
  expect('a short write returns its length', await file.write(encoder.encode('0123456789'), 0), 10);
  await file.write(encoder.encode('XY'), 4);
  expect('an overwrite in place', decoder.decode(await file.read(0, 10)), '0123XY6789');
  expect('a read past the end is short', (await file.read(8, 10)).length, 2);
  expect('a read at the end is empty', (await file.read(10, 4)).length, 0);
  await file.truncate(4);
  expect('truncate shrinks', await file.size(), 4);
  await file.write(encoder.encode('!'), 6);
  expect('a write past the end fills with zeros', [...(await file.read(0, 7))], [48, 49, 50, 51, 0, 0, 33]);
  await file.sync();

  // Two opens of one file share what they see; a read-only open refuses writes.
  const second = await fs.open(`${dir}/b`, { readOnly: true });
  await file.write(encoder.encode('Z'), 0);
  expect('a second open sees the first one write', decoder.decode(await second.read(0, 1)), 'Z');
  expect('a read-only open refuses a write', await code(() => second.write(encoder.encode('no'), 0)), 'EBADF');
  expect('an open file cannot be renamed', await code(() => fs.rename(`${dir}/b`, `${dir}/c`)), 'EBUSY');
  expect('an open file cannot be removed', await code(() => fs.unlink(`${dir}/b`)), 'EBUSY');
  await second.close();
  expect('a closed handle refuses reads', await code(() => second.read(0, 1)), 'EBADF');
  expect('the other open still reads', decoder.decode(await file.read(0, 1)), 'Z');
  await file.close();
  await file.close(); // twice: nothing

  // rename replaces its target, as the log's atomic saves need; unlink removes.
  await writeText(fs, `${dir}/new.tmp`, 'new contents');
  await fs.rename(`${dir}/new.tmp`, `${dir}/a`);
  expect('rename replaces an existing target', await readText(fs, `${dir}/a`), 'new contents');
  expect('the source is gone after rename', await fs.exists(`${dir}/new.tmp`), false);
  await fs.rename(`${dir}/a`, `${dir}/nested/moved`);
  expect('rename into another directory', await readText(fs, `${dir}/nested/moved`), 'new contents');
  await fs.unlink(`${dir}/nested/moved`);
  expect('unlink removes', await fs.exists(`${dir}/nested/moved`), false);
  expect('unlink of a missing file', await code(() => fs.unlink(`${dir}/nested/moved`)), 'ENOENT');
  expect('a path with ..', await code(() => fs.open(`${dir}/../escape`, { create: true })), 'EINVAL');
  await fs.syncDir(dir);

  // The directory lock: held once, released, taken again.
  const release = await fs.exclusive?.(dir);
  expect('the directory lock is taken', typeof release, 'function');
  expect('a second take of a held lock is refused', await fs.exclusive?.(dir), undefined);
  await release?.();
  const again = await fs.exclusive?.(dir);
  expect('a released lock is taken at once again', typeof again, 'function');
  await again?.();

  // A log closed and opened again at once in the same worker (sync restarting, a page's own reopen).
  const first = await openEventLog({ dir: `${root}/reopen`, fs, encryption: {} });
  await first.append({ entity: 'reopen', kind: 0x1001, payload: encoder.encode('kept') });
  await first.close();
  const reopened = await openEventLog({ dir: `${root}/reopen`, fs, encryption: {} });
  const payloads: string[] = [];
  for await (const event of reopened.readEntity('reopen')) payloads.push(decoder.decode(event.payload));
  expect('a closed log opens again at once and holds its event', payloads, ['kept']);
  expect('a second open of an open log', await code(() => openEventLog({ dir: `${root}/reopen`, fs })), 'Locked');
  await reopened.close();
  return { checks, failures };
}

let appending: EventLog | undefined;

let go: (() => void) | undefined;

/**
 * Appends events to the log in `dir`, one at a time, reporting each once
 * durable and going on once the page says so, until the worker is terminated
 * (the page kills it a moment after letting it go on: in the next append).
 */
async function appendUntilKilled(dir: string, sync: 'always' | 'group'): Promise<void> {
  appending = await openEventLog({ dir, fs: opfsFileSystem(), sync, encryption: {} });
  let index = 0;
  for (;;) {
    const receipt = await appending.append({ entity: 'crash', kind: 0x1001, payload: encoder.encode(`event ${index++} `.repeat(40)) });
    await receipt.durable;
    const next = new Promise<void>((resolve) => {
      go = resolve;
    });
    postMessage({ acked: receipt.events[0]?.id });
    await next;
  }
}

/** Opens the log in `dir` (recovering it), returns every event id in order and what verify says. */
async function readAll(dir: string): Promise<{ ids: string[]; verified: boolean; problem: string | undefined }> {
  const log = await openEventLog({ dir, fs: opfsFileSystem(), encryption: {} });
  try {
    const ids: string[] = [];
    for await (const event of log.readEntity('crash')) ids.push(event.id);
    const result = await log.verify();
    return { ids, verified: result.ok, problem: result.ok ? undefined : result.problem };
  } finally {
    await log.close();
  }
}

/** The decoder and CRC properties, `runs` cases each from `seed`; returns the failures. */
async function decoderProperties(seed: number, runs: number): Promise<{ properties: number; failures: string[] }> {
  const { crc32c } = await loadHashers();
  const { createCRC32 } = await import('hash-wasm');
  const wasm = await createCRC32(0x82f63b78);
  const crc32cWasm = (data: Uint8Array) => {
    wasm.init();
    wasm.update(data);
    return Number.parseInt(wasm.digest('hex'), 16);
  };
  const properties = [...frameProperties(crc32c), ...crcProperties(crc32c, crc32cWasm)];
  const failures: string[] = [];
  for (const property of properties) {
    const result = fc.check(
      fc.property(...(property.arbitraries as [fc.Arbitrary<unknown>]), (...values) => property.check(...values)),
      {
        numRuns: runs,
        seed,
      },
    );
    if (result.failed) failures.push(`${property.name}: ${fc.defaultReportMessage(result)}`);
  }
  return { properties: properties.length, failures };
}

const methods: Record<string, (...args: never[]) => Promise<unknown>> = { fsContract, appendUntilKilled, readAll, decoderProperties };

addEventListener('message', (event: MessageEvent<{ id: number; method: string; args: never[]; go?: true }>) => {
  if (event.data.go === true) {
    go?.();
    return;
  }
  const { id, method, args } = event.data;
  const run = methods[method];
  if (run === undefined) {
    postMessage({ id, error: `no method ${method}` });
    return;
  }
  run(...args).then(
    (result) => postMessage({ id, result }),
    (error: unknown) =>
      postMessage({
        id,
        error: error instanceof Error ? `${error.name}${'code' in error ? ` ${String(error.code)}` : ''}: ${error.message}` : String(error),
      }),
  );
});
