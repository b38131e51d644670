/**
 * Every KV key a library's store holds, built in this one module (the layout
 * is in docs/protocols/sync.md). Keys are also bound into ciphertexts' AAD, so
 * a path built two ways would be a format change.
 */

/** `changes.<device>.<seq>`: a signed, encrypted changeset. */
export function changesetKey(device: string, seq: number): string {
  return `changes.${device}.${seq}`;
}

/** The prefix of every device's head. */
export const headsPrefix = 'heads';

/** `heads.<device>`: a device's latest seq, snapshot seq and last sync time. */
export function headKey(device: string): string {
  return `${headsPrefix}.${device}`;
}

/** The device a `heads.<device>` key belongs to. */
export function deviceOfHeadKey(key: string): string {
  return key.slice(headsPrefix.length + 1);
}

/** `blobs.<ab>.<cd>.<id>`: a blob's header; its chunks follow at `.<n>`. */
export function blobKey(id: string): string {
  return `blobs.${id.slice(0, 2)}.${id.slice(2, 4)}.${id}`;
}

/** A blob chunk, `blobs.<ab>.<cd>.<id>.<n>` (from 1). */
export function blobChunkKey(id: string, index: number): string {
  return `${blobKey(id)}.${index}`;
}

/** `snapshots.<id>.<n>`: a snapshot's manifest (`n` = 0) and its chunks. */
export function snapshotChunkKey(id: string, index: number): string {
  return `snapshots.${id}.${index}`;
}

/** The pointer to the current snapshot, moved with compare-and-swap. */
export const currentSnapshotKey = 'snapshot.current';

/** The prefix of the membership chain. */
export const membershipPrefix = 'membership';

/** `membership.<author>.<seq>`: a signed membership entry. */
export function membershipKey(author: string, seq: number): string {
  return `${membershipPrefix}.${author}.${seq}`;
}

/** `keys.<member>.<generation>`: the library key of a generation, wrapped for a member. */
export function keyWrapKey(member: string, generation: number): string {
  return `keys.${member}.${generation}`;
}

/** The lowest schema version devices must write. */
export const minSchemaVersionKey = 'meta.min_schema_version';

/** `meta.floor.<device>`: the garbage-collection floor of a device's changesets. */
export function floorKey(device: string): string {
  return `meta.floor.${device}`;
}
