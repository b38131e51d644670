/**
 * Bytes as text and random bytes, the same on every runtime: Node.js's
 * `Buffer` does the encoding there (`#platform`), plain JavaScript in a
 * browser; random bytes come from WebCrypto's `getRandomValues`, which
 * every supported runtime has.
 */
export { bytesEqual, fromBase64, fromHex, toBase64, toHex } from '#platform';

/** `count` cryptographically random bytes. */
export function randomBytes(count: number): Uint8Array {
  const bytes = new Uint8Array(count);
  fillRandom(bytes);
  return bytes;
}

/** Fills `bytes` with cryptographically random bytes (in pieces: `getRandomValues` takes at most 64 KiB a call). */
export function fillRandom(bytes: Uint8Array): void {
  for (let at = 0; at < bytes.length; at += 65_536)
    globalThis.crypto.getRandomValues(bytes.subarray(at, Math.min(bytes.length, at + 65_536)));
}

/** The length of `text` in UTF-8 bytes (lone surrogates count 3, as `TextEncoder` writes them). */
export function utf8Length(text: string): number {
  let length = 0;
  for (let index = 0; index < text.length; index++) {
    const code = text.charCodeAt(index);
    if (code < 0x80) length += 1;
    else if (code < 0x800) length += 2;
    else if (code >= 0xd800 && code <= 0xdbff && index + 1 < text.length) {
      const next = text.charCodeAt(index + 1);
      if (next >= 0xdc00 && next <= 0xdfff) {
        length += 4;
        index++;
      } else length += 3;
    } else length += 3;
  }
  return length;
}

/** Lets a timer not keep a Node.js process alive; nothing where timers are plain numbers (a browser). */
export function unrefTimer(timer: unknown): void {
  (timer as { unref?: () => void } | undefined)?.unref?.();
}
