/**
 * The `weft` command line. Exit codes: 0 ok, 1 the operation failed, 2 the
 * command was used wrongly.
 */

import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Command, CommanderError, Help, type Option } from 'commander';
import { registerKvCommands } from './kv-commands.js';
import { registerLogCommands } from './log-commands.js';
import { CliError, describeFailure, exitFailure, exitOk, exitUsage } from './output.js';
import { registerSyncCommands } from './sync-commands.js';

const defaultHelp = new Help();

function describeOption(option: Option): string {
  const description = defaultHelp.optionDescription(option);
  return option.mandatory ? `${description} (required)` : description;
}

function build(): Command {
  const program = new Command()
    .name('weft')
    .description('weft: a versioned KV contract, an encrypt-on-append event log and end-to-end encrypted sync')
    .version('0.1.0')
    .showHelpAfterError('(run with --help for usage)')
    // Options a command cannot run without say so in its help (subcommands inherit this).
    .configureHelp({ optionDescription: describeOption })
    .exitOverride()
    .configureOutput({ writeErr: (text) => process.stderr.write(text) });

  program
    .command('demo')
    .description('three devices sync an encrypted library, converge, shred a scope and rotate the key after a removal')
    .option('--kv <url>', 'the store: memory:// (in this process), nats://host:port or redis://host:port', 'memory://')
    .option('--events <n>', 'notes each device writes', '30')
    .option('--keep', 'keep the device directories')
    .action(async (options: { kv: string; events: string; keep?: boolean }) => {
      const events = Number(options.events);
      if (!Number.isInteger(events) || events < 1 || events > 100_000)
        throw new CliError('--events must be an integer from 1 to 100000', exitUsage);
      const { runDemo } = await import('./demo.js');
      if (!(await runDemo({ kv: options.kv, events, keep: options.keep === true })))
        throw new CliError('the demo found a problem (see above)');
    });

  registerKvCommands(program);
  registerLogCommands(program);
  registerSyncCommands(program);

  program
    .command('bench')
    .description('run the benchmarks of a weft checkout (benchmarks/) and write the report')
    .allowUnknownOption()
    .argument('[args...]', 'passed to the benchmark runner, e.g. --quick or a suite name')
    .action(async (args: string[]) => {
      const runner = fileURLToPath(new URL('../../../benchmarks/dist/main.js', import.meta.url));
      if (!existsSync(runner))
        throw new CliError('weft bench runs the benchmarks of a weft checkout (benchmarks/ built with npm run build); none found');
      const code = await new Promise<number>((resolve) => {
        const child = spawn(process.execPath, [runner, ...args], { stdio: 'inherit' });
        child.on('exit', (exit) => resolve(exit ?? 1));
      });
      if (code !== 0) throw new CliError(`the benchmarks exited with ${code}`, code);
    });

  for (const command of program.commands) command.exitOverride();
  return program;
}

/** Runs the command line; resolves to the exit code. */
export async function main(argv: readonly string[]): Promise<number> {
  const program = build();
  try {
    await program.parseAsync([...argv], { from: 'user' });
    return exitOk;
  } catch (error) {
    if (error instanceof CommanderError) {
      // Help and version are not failures; everything else commander reports is a usage error (already printed).
      if (error.code === 'commander.helpDisplayed' || error.code === 'commander.version' || error.code === 'commander.help') return exitOk;
      return error.exitCode === 0 ? exitOk : exitUsage;
    }
    const { message, exitCode } = describeFailure(error);
    process.stderr.write(`weft: ${message}\n`);
    return exitCode === exitOk ? exitFailure : exitCode;
  }
}
