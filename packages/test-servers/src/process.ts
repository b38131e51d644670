import { type ChildProcess, spawn } from 'node:child_process';
import { accessSync, closeSync, constants, cpSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';

/** The package that provides each server binary on Debian and Ubuntu. */
const installHints: Record<string, string> = {
  'nats-server': 'apt-get install -y nats-server',
  'redis-server': 'apt-get install -y redis-server',
};

/** The absolute path of `name` on PATH, or `undefined`. */
export function findBinary(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (dir === '') continue;
    const candidate = join(dir, name);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not in this directory
    }
  }
  return undefined;
}

/** One line saying that `name` is missing and how to install it, or `undefined` when it is on PATH. */
export function missingBinary(name: string): string | undefined {
  if (findBinary(name) !== undefined) return undefined;
  return `${name} not found on PATH: install it with \`${installHints[name] ?? `your package manager (${name})`}\` to run these tests`;
}

/** A TCP port on 127.0.0.1 that was free a moment ago. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address !== null ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}

/**
 * Runs `start` again, up to three times in all, when it failed because a port
 * that was free when picked was taken by another process before the server
 * bound it. `start` must stop whatever it started before it throws.
 */
export async function retryingPortClash<T>(start: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await start();
    } catch (error) {
      if (attempt >= 3 || !/address already in use/i.test(String(error))) throw error;
    }
  }
}

/** A fresh temporary directory for a server's data. */
export function makeDataDir(kind: string): string {
  return mkdtempSync(join(tmpdir(), `weft-${kind}-`));
}

const running = new Set<ChildProcess>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // Servers must not outlive a test process that crashed or forgot to stop them.
  process.once('exit', () => {
    for (const child of running) child.kill('SIGKILL');
  });
}

/** How to start one server process and tell when it is ready. */
export interface ProcessSpec {
  readonly binary: string;
  readonly args: () => string[];
  readonly logFile: string;
  readonly ready: () => Promise<boolean>;
  readonly readyTimeoutMs?: number;
}

/**
 * A server child process that can be stopped gracefully, killed with SIGKILL
 * and started again with the same arguments (same port, same data directory).
 */
export class ServerProcess {
  #child: ChildProcess | undefined;
  #exited: Promise<void> = Promise.resolve();
  readonly #spec: ProcessSpec;

  constructor(spec: ProcessSpec) {
    this.#spec = spec;
  }

  /** The operating-system process id while running. */
  get pid(): number | undefined {
    return this.#child?.pid;
  }

  get running(): boolean {
    return this.#child !== undefined;
  }

  /** Starts the process and waits until it is ready. */
  async start(): Promise<void> {
    if (this.#child !== undefined) throw new Error(`${this.#spec.binary} is already running`);
    installExitHook();
    const log = openSync(this.#spec.logFile, 'a');
    const child = spawn(this.#spec.binary, this.#spec.args(), { stdio: ['ignore', log, log] });
    closeSync(log);
    this.#child = child;
    running.add(child);
    let exitCode: number | null | undefined;
    this.#exited = new Promise((resolve) => {
      child.once('exit', (code) => {
        exitCode = code;
        running.delete(child);
        if (this.#child === child) this.#child = undefined;
        resolve();
      });
    });
    const deadline = Date.now() + (this.#spec.readyTimeoutMs ?? 20_000);
    for (;;) {
      if (exitCode !== undefined) throw new Error(`${this.#spec.binary} exited with code ${exitCode} while starting:\n${this.logTail()}`);
      if (await this.#spec.ready().catch(() => false)) return;
      if (Date.now() > deadline) {
        await this.kill();
        throw new Error(`${this.#spec.binary} was not ready in time:\n${this.logTail()}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  /** Stops the process with SIGTERM and waits for it to exit (SIGKILL after 10 s). */
  async stop(): Promise<void> {
    const child = this.#child;
    if (child === undefined) return;
    // A paused process would not act on SIGTERM.
    child.kill('SIGCONT');
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    await this.#exited;
    clearTimeout(timer);
  }

  /** Kills the process with SIGKILL, as a crash would, and waits for it to be gone. */
  async kill(): Promise<void> {
    const child = this.#child;
    if (child === undefined) return;
    child.kill('SIGKILL');
    await this.#exited;
  }

  /**
   * Freezes the process (SIGSTOP), as a stalled machine or a long garbage
   * collection would: connections stay open, nothing is answered. Resolves
   * once every thread of it has stopped.
   */
  async pause(): Promise<void> {
    const child = this.#child;
    if (child?.pid === undefined) return;
    child.kill('SIGSTOP');
    // kill() returns before the process has stopped: a request sent at once could still be answered.
    while (!allThreadsStopped(child.pid)) await new Promise((resolve) => setTimeout(resolve, 5));
  }

  /** Lets a paused process go on (SIGCONT). */
  resume(): void {
    this.#child?.kill('SIGCONT');
  }

  /** Starts the process again with the same arguments. */
  async restart(): Promise<void> {
    await this.stop();
    await this.start();
  }

  /** The last lines of the process's log, for error messages. */
  logTail(lines = 20): string {
    try {
      return readFileSync(this.#spec.logFile, 'utf8').split('\n').slice(-lines).join('\n');
    } catch {
      return '(no log)';
    }
  }
}

/** Removes a data directory, ignoring one that is already gone. */
export function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}

/** Deletes what a server stored in `dir`, keeping its log file `log`. */
export function clearData(dir: string, log: string): void {
  for (const name of readdirSync(dir)) if (name !== log) rmSync(join(dir, name), { recursive: true, force: true });
}

/** Copies what a server stored in `from` into `to`, leaving out its log file `log`. */
export function copyData(from: string, to: string, log: string): void {
  for (const name of readdirSync(from)) if (name !== log) cpSync(join(from, name), join(to, name), { recursive: true });
}

/** Whether every thread of process `pid` is stopped (state `T` in /proc), or the process is gone. */
function allThreadsStopped(pid: number): boolean {
  try {
    return readdirSync(`/proc/${pid}/task`).every((thread) => {
      const stat = readFileSync(`/proc/${pid}/task/${thread}/stat`, 'utf8');
      // The state follows the command name, which is in parentheses and may contain spaces.
      const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
      return state === 'T' || state === 't';
    });
  } catch {
    return true;
  }
}

/** What the server handles of this package can do to their process and its data directory. */
export interface ServerControls {
  /** SIGKILL, as a crash would; the data directory stays for {@link ServerControls.restart}. */
  kill(): Promise<void>;
  /** Stops it gracefully and starts it again on the same port and data directory. */
  restart(): Promise<void>;
  /** Freezes the server (SIGSTOP) and waits until it has stopped: connections stay open and nothing is answered until {@link resume}. */
  pause(): Promise<void>;
  /** Lets a paused server go on (SIGCONT). */
  resume(): void;
  /** Kills it (-9), deletes everything it stored, and starts it again empty on the same port. */
  restartEmpty(): Promise<void>;
  /**
   * Copies what the server has written to disk so far into a new directory,
   * for {@link restartFrom}: a backup, or the state an older disk held.
   */
  saveData(): Promise<string>;
  /** Kills it (-9) and starts it again on the data of an earlier {@link saveData} copy, as a restore from backup would. */
  restartFrom(copy: string): Promise<void>;
}

/** The restart and fault controls of a server process whose data lives in `dataDir` beside its log file `log`. */
export function serverControls(serverProcess: ServerProcess, dataDir: string, log: string, kind: string): ServerControls {
  return {
    kill: () => serverProcess.kill(),
    restart: async () => {
      await serverProcess.stop();
      await serverProcess.start();
    },
    pause: () => serverProcess.pause(),
    resume: () => serverProcess.resume(),
    restartEmpty: async () => {
      await serverProcess.kill();
      clearData(dataDir, log);
      await serverProcess.start();
    },
    saveData: async () => {
      const copy = makeDataDir(`${kind}-copy`);
      copyData(dataDir, copy, log);
      return copy;
    },
    restartFrom: async (copy: string) => {
      await serverProcess.kill();
      clearData(dataDir, log);
      copyData(copy, dataDir, log);
      await serverProcess.start();
    },
  };
}
