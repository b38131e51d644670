import { readFile } from 'node:fs/promises';
import type { EventLog, LogEvent, SyncMode } from '@weft/eventlog';
import type { Command } from 'commander';
import { CliError, exitUsage, formatBytes, Progress } from './output.js';

interface LogOptions {
  readonly dir: string;
  readonly encrypted?: boolean;
  readonly masterKeyEnv?: string;
}

function encryptionOf(options: LogOptions): { encryption?: { masterKey?: Uint8Array } } {
  if (!options.encrypted) return {};
  if (options.masterKeyEnv === undefined) return { encryption: {} };
  const hex = process.env[options.masterKeyEnv];
  if (hex === undefined || !/^[0-9a-fA-F]{64}$/.test(hex)) {
    throw new CliError(`environment variable ${options.masterKeyEnv} must hold the 32-byte master key as 64 hex characters`, exitUsage);
  }
  return { encryption: { masterKey: new Uint8Array(Buffer.from(hex, 'hex')) } };
}

async function withLog<T>(
  options: LogOptions,
  readOnly: boolean,
  work: (log: EventLog) => Promise<T>,
  extra: { sync?: SyncMode } = {},
): Promise<T> {
  const { EventLogError, openEventLog } = await import('@weft/eventlog');
  const log = await openEventLog({ dir: options.dir, readOnly, ...encryptionOf(options), ...extra }).catch((error: unknown) => {
    // The library names its option; the command's user needs the command's.
    if (EventLogError.is(error) && error.message.includes('pass encryption.masterKey')) {
      throw new CliError(
        `the log at ${options.dir} is encrypted with a master key: pass --encrypted --master-key-env VAR, with VAR holding the key as 64 hex characters`,
        exitUsage,
      );
    }
    throw error;
  });
  try {
    return await work(log);
  } finally {
    await log.close();
  }
}

function payloadText(event: LogEvent): string {
  if (event.disposition === 'shredded') return '<shredded>';
  if (event.disposition === 'sealed') return '<encrypted: open with --encrypted>';
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(event.payload);
  } catch {
    return `base64:${Buffer.from(event.payload).toString('base64')}`;
  }
}

function eventLine(event: LogEvent, json: boolean): string {
  if (json) {
    return JSON.stringify({
      position: event.position,
      id: event.id,
      entity: event.entity,
      scope: event.scope,
      sequence: event.sequence,
      kind: `0x${event.kind.toString(16)}`,
      time: event.time.toString(),
      parents: event.parents,
      disposition: event.disposition,
      payload: payloadText(event),
    });
  }
  return `${event.position} ${event.entity}#${event.sequence} 0x${event.kind.toString(16)} ${event.id} ${payloadText(event)}`;
}

function parseKind(text: string): number {
  const kind = text.startsWith('0x') ? Number.parseInt(text.slice(2), 16) : Number(text);
  if (!Number.isInteger(kind) || kind < 0 || kind > 0xffff)
    throw new CliError(`--kind must be a u16 such as 0x1001, got '${text}'`, exitUsage);
  return kind;
}

/** A whole-number option (a position, a count, a sequence); anything else is a usage error naming it. */
function parseCount(option: string, text: string, min: number): number {
  const value = /^[0-9]{1,15}$/.test(text) ? Number(text) : Number.NaN;
  if (!(value >= min)) throw new CliError(`${option} must be a whole number of at least ${min}, got '${text}'`, exitUsage);
  return value;
}

export function registerLogCommands(program: Command): void {
  const log = program.command('log').description('work with an event log directory');
  const common = (command: Command) =>
    command
      .requiredOption('--dir <path>', 'the log directory')
      .option('--encrypted', 'the log encrypts payloads (its keyset is in the directory)')
      .option('--master-key-env <name>', 'environment variable holding the keyset master key (64 hex characters)');

  common(log.command('append [payload]').description('append one event; prints its position and id'))
    .requiredOption('--entity <entity>', 'the entity (stream)')
    .requiredOption('--kind <kind>', 'the kind, a u16 such as 0x1001 (categories 0x0 and 0xD are reserved)')
    .option('--scope <scope>', 'the scope (default: the entity)')
    .option('--file <path>', 'read the payload from a file')
    .option('--expected-sequence <n>', 'append only if the entity is at this sequence')
    .action(
      async (
        payload: string | undefined,
        options: LogOptions & { entity: string; kind: string; scope?: string; file?: string; expectedSequence?: string },
      ) => {
        let bytes: Uint8Array;
        if (options.file !== undefined) bytes = new Uint8Array(await readFile(options.file));
        else if (payload === '-' || (payload === undefined && !process.stdin.isTTY)) {
          const chunks: Buffer[] = [];
          for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
          bytes = new Uint8Array(Buffer.concat(chunks));
        } else if (payload !== undefined) bytes = new TextEncoder().encode(payload);
        else throw new CliError('a payload is needed: an argument, --file PATH, or - for standard input', exitUsage);
        const kind = parseKind(options.kind);
        await withLog(
          options,
          false,
          async (opened) => {
            const receipt = await opened.append(
              { entity: options.entity, kind, payload: bytes, ...(options.scope === undefined ? {} : { scope: options.scope }) },
              options.expectedSequence === undefined
                ? {}
                : { expectedSequence: parseCount('--expected-sequence', options.expectedSequence, 0) },
            );
            await receipt.durable;
            const [event] = receipt.events;
            process.stdout.write(`${receipt.position} ${event?.id}\n`);
          },
          { sync: 'always' },
        );
      },
    );

  common(log.command('read').description('print events, one per line: position entity#sequence kind id payload'))
    .option('--from <position>', 'start at this position', '1')
    .option('--entity <entity>', 'only this entity')
    .option('--json', 'one JSON object per line')
    .action(async (options: LogOptions & { from: string; entity?: string; json?: boolean }) => {
      const from = parseCount('--from', options.from, 1);
      await withLog(options, true, async (opened) => {
        const source = options.entity === undefined ? opened.read(from) : opened.readEntity(options.entity);
        for await (const event of source) {
          if (event.position < from) continue;
          process.stdout.write(`${eventLine(event, options.json === true)}\n`);
        }
      });
    });

  common(log.command('tail').description('follow the log: print events as they are appended (by any process)'))
    .option('--from <position>', 'start at this position (default: only new events)')
    .option('--entity <entity>', 'only this entity')
    .option('--count <n>', 'stop after this many events')
    .option('--json', 'one JSON object per line')
    .action(async (options: LogOptions & { from?: string; entity?: string; count?: string; json?: boolean }) => {
      const limit = options.count === undefined ? Number.POSITIVE_INFINITY : parseCount('--count', options.count, 1);
      const start = options.from === undefined ? undefined : parseCount('--from', options.from, 1);
      await withLog(options, true, async (opened) => {
        const controller = new AbortController();
        process.once('SIGINT', () => controller.abort());
        let printed = 0;
        const from = start ?? opened.head + 1;
        for await (const item of opened.subscribe({
          from,
          signal: controller.signal,
          ...(options.entity === undefined ? {} : { entity: options.entity }),
        })) {
          if (item.type !== 'event') continue;
          process.stdout.write(`${eventLine(item.event, options.json === true)}\n`);
          if (++printed >= limit) break;
        }
      });
    });

  common(log.command('verify').description('check every CRC, position, sequence and hash chain; exit 1 naming the first bad frame')).action(
    async (options: LogOptions) => {
      // Damage found while opening is reported like damage found by verify: segment, offset, what.
      const verifying = withLog(options, true, async (opened) => {
        const progress = new Progress('verify');
        const result = await opened.verify({ onProgress: (done, total) => progress.update(done, total, ' bytes') });
        progress.done();
        // An empty or mistyped directory is not a log that verified.
        if (result.ok && result.segments === 0) throw new CliError(`${options.dir} holds no event log (no segment files)`);
        if (!result.ok) {
          throw new CliError(
            `bad frame in ${result.segment} at offset ${result.offset}${result.position === undefined ? '' : ` (position ${result.position})`}: ${result.problem}; ${result.events} events before it are good`,
          );
        }
        process.stdout.write(`ok: ${result.events} events in ${result.segments} segment${result.segments === 1 ? '' : 's'} verified\n`);
      });
      const { EventLogError } = await import('@weft/eventlog');
      await verifying.catch((error: unknown) => {
        if (EventLogError.is(error, 'Corrupt'))
          throw new CliError(`bad frame in ${error.segment} at offset ${error.offset}: ${error.message}`);
        throw error;
      });
    },
  );

  common(log.command('stats').description('count events, entities, kinds and bytes'))
    .option('--json', 'print JSON')
    .action(async (options: LogOptions & { json?: boolean }) => {
      await withLog(options, true, async (opened) => {
        const progress = new Progress('stats');
        const kinds = new Map<number, number>();
        const entities = new Set<string>();
        let events = 0;
        let bytes = 0;
        let encrypted = 0;
        let shredded = 0;
        let first: bigint | undefined;
        let last: bigint | undefined;
        for await (const event of opened.read(1, { payloads: false })) {
          events++;
          bytes += event.storedPayload.length;
          entities.add(event.entity);
          kinds.set(event.kind, (kinds.get(event.kind) ?? 0) + 1);
          if (event.disposition !== 'plain') encrypted++;
          if (event.disposition === 'shredded') shredded++;
          first ??= event.time;
          last = event.time;
          if (events % 1000 === 0) progress.update(event.position, opened.head, ' events');
        }
        progress.done();
        const wall = (time: bigint | undefined) => (time === undefined ? undefined : new Date(Number(time >> 16n)).toISOString());
        const stats = {
          events,
          entities: entities.size,
          kinds: Object.fromEntries([...kinds].map(([kind, count]) => [`0x${kind.toString(16)}`, count])),
          payloadBytes: bytes,
          encrypted,
          shredded,
          first: wall(first),
          last: wall(last),
        };
        if (options.json) process.stdout.write(`${JSON.stringify(stats)}\n`);
        else {
          process.stdout.write(
            `${events} events, ${entities.size} entities, ${formatBytes(bytes)} of payloads (${encrypted} encrypted, ${shredded} shredded)\n` +
              `kinds: ${Object.entries(stats.kinds)
                .map(([kind, count]) => `${kind}=${count}`)
                .join(' ')}\n` +
              (events > 0 ? `from ${stats.first} to ${stats.last}\n` : ''),
          );
        }
      });
    });

  common(log.command('shred').description('crypto-shred: durably destroy the keys of a scope, an entity or an event (encrypted logs)'))
    .option('--scope <scope>', 'the scope')
    .option('--entity <entity>', 'the entity')
    .option('--event <id>', 'the event id')
    .action(async (options: LogOptions & { scope?: string; entity?: string; event?: string }) => {
      if (!options.encrypted) throw new CliError('shred needs an encrypted log: pass --encrypted', exitUsage);
      const target = {
        ...(options.scope === undefined ? {} : { scope: options.scope }),
        ...(options.entity === undefined ? {} : { entity: options.entity }),
        ...(options.event === undefined ? {} : { eventId: options.event as never }),
      };
      if (Object.keys(target).length === 0) throw new CliError('name what to shred: --scope, --entity or --event', exitUsage);
      await withLog(options, false, async (opened) => {
        // A name with no event is most likely a typo: say so instead of reporting nothing destroyed.
        if (options.entity !== undefined && opened.sequenceOf(options.entity) === 0) {
          throw new CliError(`no event of entity '${options.entity}' in this log; nothing destroyed`);
        }
        if (options.event !== undefined && !opened.has(options.event)) {
          throw new CliError(`no event with id ${options.event} in this log; nothing destroyed`);
        }
        const count = await opened.shred(target);
        process.stdout.write(`${count} key${count === 1 ? '' : 's'} destroyed\n`);
      });
    });
}
