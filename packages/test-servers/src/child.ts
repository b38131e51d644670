import { type ChildProcess, spawn } from 'node:child_process';

/** How a bounded child process ended. */
export interface ChildRun {
  /** The exit code, or `null` when a signal ended it. */
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
  /** True when the child ran past `limitMs` and was killed with SIGKILL. */
  readonly timedOut: boolean;
}

/** Options of {@link runChild}. */
export interface RunChildOptions {
  /** The child is killed with SIGKILL when it runs longer than this. */
  readonly limitMs: number;
  /** Written to the child's stdin, which is then closed. */
  readonly input?: string | Uint8Array;
  /** Called with each chunk of stdout and a way to end the child, e.g. to kill it at a chosen moment. */
  readonly onStdout?: (chunk: string, child: ChildProcess) => void;
  /** Variables added to this process's environment for the child. */
  readonly env?: Readonly<Record<string, string>>;
  /** The child's working directory. @default this process's */
  readonly cwd?: string;
}

const children = new Set<ChildProcess>();
let exitHookInstalled = false;

/**
 * Runs `command` to its end, or kills it with SIGKILL after `limitMs`, so a
 * hung child fails its test instead of outliving it; a child still running
 * when the test process exits is killed too.
 */
export function runChild(command: string, args: readonly string[], options: RunChildOptions): Promise<ChildRun> {
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.once('exit', () => {
      for (const child of children) child.kill('SIGKILL');
    });
  }
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      stdio: ['pipe', 'pipe', 'pipe'],
      ...(options.env === undefined ? {} : { env: { ...process.env, ...options.env } }),
      ...(options.cwd === undefined ? {} : { cwd: options.cwd }),
    });
    children.add(child);
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, options.limitMs);
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      stdout += chunk;
      options.onStdout?.(chunk, child);
    });
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
      stderr += chunk;
    });
    child.on('error', (error) => {
      clearTimeout(timer);
      children.delete(child);
      reject(error);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      children.delete(child);
      resolve({ code, signal, stdout, stderr, timedOut });
    });
    child.stdin.on('error', () => {
      // A child that exits before reading its input closes the pipe; its exit is what counts.
    });
    child.stdin.end(options.input);
  });
}
