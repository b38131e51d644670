/** Small helpers of sync: hex of bytes. */

/** Lowercase hex of bytes. */
export { toHex as hexOf } from '@weft/common';
