/**
 * `@weft/eventlog`: a durable, append-only event log.
 *
 * ```ts
 * import { openEventLog } from '@weft/eventlog';
 * const log = await openEventLog({ dir: './data/log', sync: 'group' });
 * const receipt = await log.append({ entity: 'order-42', kind: 0x1001, payload });
 * await receipt.durable; // fsynced
 * for await (const event of log.readEntity('order-42')) console.log(event.sequence, event.kind);
 * await log.close();
 * ```
 *
 * Events live in segment files of CRC-checked frames (docs/formats/eventlog.md),
 * each payload hashed with BLAKE3 and chained per entity. Appends are single or
 * atomic batches with expected sequences, idempotency keys and gates; four sync
 * modes trade latency for durability; recovery truncates only a torn tail. All
 * I/O goes through a filesystem seam with real, in-memory and simulated
 * implementations.
 *
 * @packageDocumentation
 */

export { nodeFileSystem } from '#platform';
export {
  checkFrames,
  type DecodedFrame,
  decodeFrameBody,
  decodeSegmentHeader,
  type EncryptionMetadata,
  encodeFrame,
  encodeSegmentHeader,
  type FrameHeader,
  type FrameProblem,
  type FrameReadOptions,
  readFrame,
} from './codec.js';
export { type CipherName, loadXChaCha } from './crypto/cipher-choice.js';
export { type EncryptionOptions, payloadAad } from './crypto/encrypted-codec.js';
export type { Granularity, ShredTarget } from './crypto/keyset.js';
export { loadSodiumXChaCha } from './crypto/sodium.js';
export { defaultXChaCha, hchacha20, nobleXChaCha, nodeXChaCha, type XChaCha } from './crypto/xchacha.js';
export { EventLogError, EventLogErrorCode, type EventLogErrorOptions } from './errors.js';
export { MemoryFileSystem } from './fs/memory-fs.js';
export { type OpfsDirectoryHandle, type OpfsFileSystemOptions, opfsFileSystem } from './fs/opfs-fs.js';
export { type DurableOperation, type InjectedFault, SimulatedCrash, SimulatedFileSystem } from './fs/simulated-fs.js';
export { FileSystemError, type LogFile, type LogFileSystem, type OpenOptions } from './fs/types.js';
export { type Hashers, loadHashers } from './hash.js';
export { type EventId, HybridLogicalClock, isUuid, UuidV7Generator } from './ids.js';
export {
  EventLog,
  type EventLogOptions,
  type LogAppendContext,
  type LogFlushContext,
  logAppendChannel,
  logFlushChannel,
  openEventLog,
} from './log.js';
export { RandomPool } from './random.js';
export { isReservedKind } from './rules.js';
export type {
  AppendedEvent,
  AppendInput,
  AppendOptions,
  AppendReceipt,
  CausalWalk,
  Gate,
  GateContext,
  GateVerdict,
  LogEvent,
  SubscriptionItem,
  SyncMode,
  VerifyResult,
} from './types.js';
