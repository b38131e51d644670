/**
 * How the command talks: results on stdout, messages on stderr, exit codes
 * 0 (ok), 1 (the operation failed), 2 (the command was used wrongly).
 */
import { WeftError } from '@weft/common';

export const exitOk = 0;
export const exitFailure = 1;
export const exitUsage = 2;

/** A failure to report to the user as is (no stack), with its exit code. */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode: number = exitFailure,
  ) {
    super(message);
  }
}

/** One line for a failure: typed errors keep their code; anything else is a bug and keeps its stack. */
export function describeFailure(error: unknown): { message: string; exitCode: number } {
  if (error instanceof CliError) return { message: error.message, exitCode: error.exitCode };
  // KvError, EventLogError and SyncError (the packages load only when a command needs them).
  if (error instanceof WeftError) {
    // What the user typed was wrong (a key, a version, a kind): a usage error like a bad option.
    const usage = error.code === 'InvalidKey' || error.code === 'InvalidArgument';
    return { message: `${error.code}: ${error.message}`, exitCode: usage ? exitUsage : exitFailure };
  }
  return { message: error instanceof Error ? (error.stack ?? error.message) : String(error), exitCode: exitFailure };
}

/** Progress on stderr, only when it is a terminal; otherwise silent (logs and pipes stay clean). */
export class Progress {
  readonly #label: string;
  readonly #enabled = process.stderr.isTTY === true;
  #last = 0;

  constructor(label: string) {
    this.#label = label;
  }

  update(done: number, total: number, unit = ''): void {
    if (!this.#enabled) return;
    const now = Date.now();
    if (now - this.#last < 100 && done < total) return;
    this.#last = now;
    const ratio = total === 0 ? 1 : Math.min(1, done / total);
    const width = 30;
    const filled = Math.round(ratio * width);
    process.stderr.write(
      `\r${this.#label} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${Math.floor(ratio * 100)}% ${done}/${total}${unit}`,
    );
  }

  done(): void {
    if (this.#enabled) process.stderr.write('\r\u001b[K');
  }
}

export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KiB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}
