/**
 * Ed25519 points of small order, the rule both sides of `#platform` apply
 * before verifying: a public key or a nonce R of small order is refused.
 * OpenSSL changed here (3.0, in Node.js 22 and earlier, takes a small-order
 * key; 3.5, in Node.js 24, refuses it), so without this rule two Node
 * devices, or a Node device and a browser, could disagree on whether a
 * signature verifies. libsodium refuses the same encodings.
 */

/** Every encoding of a point of small order, the sign bit (top bit of the last byte) left out: libsodium's list. */
const encodings = [
  '0000000000000000000000000000000000000000000000000000000000000000', // 0, order 4
  '0100000000000000000000000000000000000000000000000000000000000000', // 1, order 1 (the identity)
  '26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05', // order 8
  'c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a', // order 8
  'ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f', // p - 1, order 2
  'edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f', // p, which is 0: order 4
  'eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f', // p + 1, which is 1: order 1
].map((hex) => Uint8Array.from(hex.match(/../g) ?? [], (pair) => Number.parseInt(pair, 16)));

/** True when the 32 bytes at `offset` of `bytes` encode a point of small order, in any encoding. */
export function hasSmallOrder(bytes: Uint8Array, offset = 0): boolean {
  next: for (const encoding of encodings) {
    for (let index = 0; index < 31; index++) if (bytes[offset + index] !== encoding[index]) continue next;
    if (((bytes[offset + 31] as number) & 0x7f) === encoding[31]) return true;
  }
  return false;
}
