import { readFile } from 'node:fs/promises';
import type { SyncStateData } from '@weft/sync';
import type { Command } from 'commander';
import { CliError } from './output.js';

export function registerSyncCommands(program: Command): void {
  const sync = program.command('sync').description('inspect sync state');
  sync
    .command('status')
    .description('what a device directory knows about sync: own seq, pending uploads, per-device progress')
    .requiredOption('--dir <path>', "the device's log directory (where sync-state.json lives)")
    .option('--json', 'print JSON')
    .action(async (options: { dir: string; json?: boolean }) => {
      let state: SyncStateData;
      try {
        state = JSON.parse(await readFile(`${options.dir}/sync-state.json`, 'utf8')) as SyncStateData;
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code;
        if (code === 'ENOENT') {
          throw new CliError(
            `${options.dir} is not a synced device's directory: it has no sync-state.json (sync writes it on its first round)`,
          );
        }
        const reason = error instanceof SyntaxError ? 'it is not valid JSON' : error instanceof Error ? error.message : String(error);
        throw new CliError(`cannot read ${options.dir}/sync-state.json: ${reason}`);
      }
      const { openEventLog } = await import('@weft/eventlog');
      const log = await openEventLog({ dir: options.dir, readOnly: true }).catch(() => undefined);
      let pending = 0;
      if (log !== undefined) {
        for (let position = state.pushedPosition + 1; position <= log.head; position++) {
          if (!state.imported.some(([from, to]) => position >= from && position <= to)) pending++;
        }
        await log.close();
      }
      // Version 1 state files kept one pending changeset, version 2 a batch.
      const stored = state.pending as SyncStateData['pending'] | SyncStateData['pending'][number] | undefined;
      const inFlight = (Array.isArray(stored) ? stored : stored === undefined ? [] : [stored]).map((changeset) => changeset.seq);
      const summary = {
        device: state.device,
        lastPushedSeq: state.lastSeq,
        pendingUploads: pending,
        uploadsInFlight: inFlight,
        devices: Object.fromEntries(Object.entries(state.remote).map(([device, remote]) => [device, remote.seq])),
        waitingForParents: state.parked.length,
        queuedBlobs: state.pendingBlobs?.length ?? 0,
      };
      if (options.json) {
        process.stdout.write(`${JSON.stringify(summary)}\n`);
        return;
      }
      process.stdout.write(
        `device ${summary.device}: pushed through changeset ${summary.lastPushedSeq}, ${summary.pendingUploads} event(s) waiting to upload` +
          `${inFlight.length === 0 ? '' : `, changesets ${inFlight[0]}-${inFlight.at(-1)} in flight`}\n`,
      );
      for (const [device, seq] of Object.entries(summary.devices))
        process.stdout.write(`  from ${device}: applied through changeset ${seq}\n`);
      if (summary.waitingForParents > 0) process.stdout.write(`  ${summary.waitingForParents} event(s) waiting for causal parents\n`);
    });
}
