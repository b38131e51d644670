/**
 * What `@weft/common` takes from Node.js (and Bun, Deno): its
 * `node:diagnostics_channel` tracing channels. Selected by the `#platform`
 * import's `default` condition; `browser.ts` is the other side.
 */
export { tracingChannel } from 'node:diagnostics_channel';

/** Lowercase hex of `bytes`. */
export function toHex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');
}

/** The bytes of hex digits, up to the first pair that is not hex (as Node's `Buffer.from(text, 'hex')`). */
export function fromHex(text: string): Uint8Array {
  return new Uint8Array(Buffer.from(text, 'hex'));
}

/** Standard base64 of `bytes`, padded. */
export function toBase64(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64');
}

/** The bytes of base64 or base64url text; characters outside both alphabets are skipped, `=` ends it (as Node's decoder). */
export function fromBase64(text: string): Uint8Array {
  return new Uint8Array(Buffer.from(text, 'base64'));
}

/** True when `a` and `b` hold the same bytes. */
export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  return (
    a.length === b.length && Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength))
  );
}
