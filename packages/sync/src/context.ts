/** What the parts of a device's sync share: its log, its store, its state and its view of the library. */
import type { EventLog, Hashers, XChaCha } from '@weft/eventlog';
import type { KvStore } from '@weft/kv';
import type { ChangesetCopies } from './changeset-copies.js';
import type { DeviceIdentity } from './identity.js';
import type { Library } from './library.js';
import type { ChunkStore } from './sealed-chunks.js';
import type { StateFile, SyncStateData } from './state.js';
import type { StatusBoard } from './status.js';

export interface SyncContext {
  readonly device: string;
  readonly log: EventLog;
  readonly kv: KvStore;
  readonly identity: DeviceIdentity;
  readonly library: Library;
  readonly state: SyncStateData;
  readonly stateFile: StateFile;
  /** Copies of the changesets this device pushed or verified, written back when the store forgets them. */
  readonly copies: ChangesetCopies;
  readonly hashers: Hashers;
  readonly cipher: XChaCha;
  /** Where blobs and snapshot bodies are sealed in chunks. */
  readonly chunkStore: ChunkStore;
  readonly clock: () => number;
  /** The highest changeset schema this device understands, and the one it writes. */
  readonly schemaVersion: number;
  readonly board: StatusBoard;
  /** Tells status listeners that something changed. */
  readonly notify: () => void;
}
