/**
 * Runs `callback` in a later task of the event loop, after the I/O callbacks
 * already queued: `setImmediate` where the runtime has it (Node.js, Bun),
 * a `MessageChannel` message in a browser (a zero `setTimeout` is clamped
 * to 4 ms there once nested).
 */
export function nextTask(callback: () => void): void {
  const immediate = (globalThis as { setImmediate?: (run: () => void) => unknown }).setImmediate;
  if (immediate !== undefined) {
    immediate(callback);
    return;
  }
  // A browser's MessagePort (Node's typings describe Node's own).
  const { port1, port2 } = new MessageChannel() as unknown as {
    port1: { onmessage: (() => void) | null; close(): void };
    port2: { postMessage(message: unknown): void };
  };
  port1.onmessage = () => {
    port1.close();
    callback();
  };
  port2.postMessage(undefined);
}
