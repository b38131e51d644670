/**
 * The browser's side of `#platform` (node.ts is Node's): tracing channels in
 * plain JavaScript with the semantics of Node's `TracingChannel` that weft
 * uses (subscribe, unsubscribe, `hasSubscribers`, `tracePromise`). A channel
 * is found by name, so a subscriber and the package that publishes share it.
 */
import type { TracingChannel } from 'node:diagnostics_channel';

type Handlers = {
  start?: (message: unknown) => void;
  end?: (message: unknown) => void;
  asyncStart?: (message: unknown) => void;
  asyncEnd?: (message: unknown) => void;
  error?: (message: unknown) => void;
};

class BrowserTracingChannel {
  readonly #subscribers = new Set<Handlers>();

  get hasSubscribers(): boolean {
    return this.#subscribers.size > 0;
  }

  subscribe(handlers: Handlers): void {
    this.#subscribers.add(handlers);
  }

  unsubscribe(handlers: Handlers): boolean {
    return this.#subscribers.delete(handlers);
  }

  #publish(event: keyof Handlers, context: unknown): void {
    for (const handlers of [...this.#subscribers]) {
      try {
        handlers[event]?.(context);
      } catch (error) {
        // As Node does: a subscriber's error never reaches the traced operation.
        queueMicrotask(() => {
          throw error;
        });
      }
    }
  }

  tracePromise<Result>(run: () => Promise<Result>, context: Record<string, unknown> = {}): Promise<Result> {
    this.#publish('start', context);
    let promise: Promise<Result>;
    try {
      promise = run();
    } catch (error) {
      context.error = error;
      this.#publish('error', context);
      this.#publish('end', context);
      throw error;
    }
    this.#publish('end', context);
    return promise.then(
      (result) => {
        context.result = result;
        this.#publish('asyncStart', context);
        this.#publish('asyncEnd', context);
        return result;
      },
      (error: unknown) => {
        context.error = error;
        this.#publish('error', context);
        this.#publish('asyncStart', context);
        this.#publish('asyncEnd', context);
        throw error;
      },
    );
  }
}

const channels = new Map<string, BrowserTracingChannel>();

/** The tracing channel `name`: the same object for every caller in this page or worker. */
export function tracingChannel<Store, Context extends object>(name: string): TracingChannel<Store, Context> {
  let channel = channels.get(name);
  if (channel === undefined) {
    channel = new BrowserTracingChannel();
    channels.set(name, channel);
  }
  return channel as unknown as TracingChannel<Store, Context>;
}

const hexDigits = '0123456789abcdef';

/** Lowercase hex of `bytes`. */
export function toHex(bytes: Uint8Array): string {
  let text = '';
  for (const byte of bytes) text += `${hexDigits[byte >>> 4]}${hexDigits[byte & 15]}`;
  return text;
}

function nibble(code: number): number {
  if (code >= 48 && code <= 57) return code - 48;
  if (code >= 97 && code <= 102) return code - 87;
  if (code >= 65 && code <= 70) return code - 55;
  return -1;
}

/** The bytes of hex digits, up to the first pair that is not hex (as Node's `Buffer.from(text, 'hex')`). */
export function fromHex(text: string): Uint8Array {
  const bytes = new Uint8Array(text.length >>> 1);
  let length = 0;
  for (; length < bytes.length; length++) {
    const high = nibble(text.charCodeAt(length * 2));
    const low = nibble(text.charCodeAt(length * 2 + 1));
    if (high < 0 || low < 0) break;
    bytes[length] = (high << 4) | low;
  }
  return bytes.slice(0, length);
}

const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
const sextets = new Int8Array(128).fill(-1);
for (let index = 0; index < 64; index++) sextets[alphabet.charCodeAt(index)] = index;
sextets[45] = 62; // '-' of base64url
sextets[95] = 63; // '_' of base64url

/** Standard base64 of `bytes`, padded. */
export function toBase64(bytes: Uint8Array): string {
  let text = '';
  let index = 0;
  for (; index + 2 < bytes.length; index += 3) {
    const word = ((bytes[index] as number) << 16) | ((bytes[index + 1] as number) << 8) | (bytes[index + 2] as number);
    text += `${alphabet[word >>> 18]}${alphabet[(word >>> 12) & 63]}${alphabet[(word >>> 6) & 63]}${alphabet[word & 63]}`;
  }
  const left = bytes.length - index;
  if (left === 1) {
    const word = (bytes[index] as number) << 16;
    text += `${alphabet[word >>> 18]}${alphabet[(word >>> 12) & 63]}==`;
  } else if (left === 2) {
    const word = ((bytes[index] as number) << 16) | ((bytes[index + 1] as number) << 8);
    text += `${alphabet[word >>> 18]}${alphabet[(word >>> 12) & 63]}${alphabet[(word >>> 6) & 63]}=`;
  }
  return text;
}

/** The bytes of base64 or base64url text; characters outside both alphabets are skipped, `=` ends it (as Node's decoder). */
export function fromBase64(text: string): Uint8Array {
  const bytes = new Uint8Array(Math.ceil((text.length * 3) / 4));
  let length = 0;
  let word = 0;
  let bits = 0;
  for (let index = 0; index < text.length; index++) {
    const code = text.charCodeAt(index);
    if (code === 61) break;
    const value = code < 128 ? (sextets[code] as number) : -1;
    if (value < 0) continue;
    word = (word << 6) | value;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      bytes[length++] = (word >>> bits) & 0xff;
    }
  }
  return bytes.slice(0, length);
}

/** True when `a` and `b` hold the same bytes. */
export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let index = 0; index < a.length; index++) if (a[index] !== b[index]) return false;
  return true;
}
