/** Small helpers of sync: hex of bytes. */

/** Lowercase hex of bytes. */
export const hexOf = (bytes: Uint8Array): string => Buffer.from(bytes).toString('hex');
