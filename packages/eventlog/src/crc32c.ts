/**
 * CRC-32C (Castagnoli) in JavaScript, slicing by 16: for a frame of a few
 * hundred bytes it is faster than a call into the WASM hasher (which also
 * allocates its digest), so the format's CRC uses it below
 * {@link crc32cJsLimit} bytes and the WASM hasher above.
 */
const polynomial = 0x82f63b78;
const slices = 16;
const table = new Uint32Array(slices * 256);
for (let byte = 0; byte < 256; byte++) {
  let crc = byte;
  for (let bit = 0; bit < 8; bit++) crc = crc & 1 ? (crc >>> 1) ^ polynomial : crc >>> 1;
  table[byte] = crc >>> 0;
}
for (let byte = 0; byte < 256; byte++) {
  for (let slice = 1; slice < slices; slice++) {
    const previous = table[(slice - 1) * 256 + byte] as number;
    table[slice * 256 + byte] = (previous >>> 8) ^ (table[previous & 0xff] as number);
  }
}

/** Inputs shorter than this are checksummed in JavaScript (measured: the two cost the same at about 700 bytes; at 1.2 KiB the WASM hasher takes 0.75 µs and this 0.9-1.1). */
export const crc32cJsLimit = 768;

/** CRC-32C of `data[start, end)`, read in place. */
export function crc32cJs(data: Uint8Array, start = 0, end = data.length): number {
  const t = table;
  let crc = 0xffffffff;
  let at = start;
  const length = end;
  const wholeEnd = end - ((end - start) & 15);
  while (at < wholeEnd) {
    const word =
      ((data[at] as number) | ((data[at + 1] as number) << 8) | ((data[at + 2] as number) << 16) | ((data[at + 3] as number) << 24)) ^ crc;
    crc =
      (t[3840 + (word & 0xff)] as number) ^
      (t[3584 + ((word >>> 8) & 0xff)] as number) ^
      (t[3328 + ((word >>> 16) & 0xff)] as number) ^
      (t[3072 + (word >>> 24)] as number) ^
      (t[2816 + (data[at + 4] as number)] as number) ^
      (t[2560 + (data[at + 5] as number)] as number) ^
      (t[2304 + (data[at + 6] as number)] as number) ^
      (t[2048 + (data[at + 7] as number)] as number) ^
      (t[1792 + (data[at + 8] as number)] as number) ^
      (t[1536 + (data[at + 9] as number)] as number) ^
      (t[1280 + (data[at + 10] as number)] as number) ^
      (t[1024 + (data[at + 11] as number)] as number) ^
      (t[768 + (data[at + 12] as number)] as number) ^
      (t[512 + (data[at + 13] as number)] as number) ^
      (t[256 + (data[at + 14] as number)] as number) ^
      (t[data[at + 15] as number] as number);
    at += 16;
  }
  while (at < length) crc = (t[(crc ^ (data[at++] as number)) & 0xff] as number) ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}
