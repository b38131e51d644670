/** What a device is told about a library and how its sync runs: the options of `openSync`. */
import type { CipherName, EventLog, LogFileSystem } from '@weft/eventlog';
import type { KvStore } from '@weft/kv';
import { SyncError, SyncErrorCode } from './errors.js';
import type { DeviceIdentity, DevicePublic } from './identity.js';
import { x25519Of } from './keys.js';

/**
 * A library: a store id, and either a founder (membership, roles and keys
 * come from the signed membership chain and key wraps in the store) or a key
 * and member list provisioned out of band.
 */
export interface LibraryConfig {
  /** The store id, bound into every ciphertext's AAD: `[A-Za-z0-9_-]+`. */
  readonly id: string;
  /** The device that created the library: the trust anchor of the membership chain. */
  readonly founder?: DevicePublic;
  /** Out-of-band mode: the library key, 32 bytes. */
  readonly key?: Uint8Array;
  /** Out-of-band mode: the key's generation. @default 0 */
  readonly keyGeneration?: number;
  /** Out-of-band mode: the devices allowed to write. */
  readonly members?: readonly DevicePublic[];
}

/** What a device hands an owner to be invited: its ids and public keys. */
export interface Invitation extends DevicePublic {
  readonly x25519PublicKey: Uint8Array;
}

/** The invitation of an identity (share it with an owner; it holds no secret). */
export function invitationOf(identity: DeviceIdentity): Invitation {
  return { deviceId: identity.deviceId, publicKey: identity.publicKey, x25519PublicKey: x25519Of(identity).publicKey };
}

/** The stages of a push, in order; a crash between any two is safe. */
export type PushStage = 'prepared' | 'created' | 'head-published' | 'done';

/** Hooks for fault simulation in tests. */
export interface SyncFaultHooks {
  /** Called at each push stage; throwing stops the push there, as a crash would. */
  readonly onPushStage?: (stage: PushStage, seq: number) => void;
}

/** Options of `openSync`. */
export interface SyncOptions {
  readonly log: EventLog;
  readonly kv: KvStore;
  readonly identity: DeviceIdentity;
  readonly library: LibraryConfig;
  /** The highest changeset schema this device understands, and the one it writes. @default 1 */
  readonly schemaVersion?: number | undefined;
  /** @default 256 */
  readonly maxEventsPerChangeset?: number | undefined;
  /**
   * Changesets handled at once: a push seals and creates up to this many
   * with one state save and one head update; a pull keeps up to this many
   * of a device in flight and applies them with one append, one flush and
   * one state save. Either stops early at about 16 MiB of changesets.
   * @default 256
   */
  readonly batchChangesets?: number | undefined;
  /**
   * `true`: watch heads, push on local appends and retry on a timer in the
   * background. `false`: only the heads watch runs; call `syncOnce()`.
   * @default true
   */
  readonly live?: boolean | undefined;
  /** Anti-entropy interval of the live mode: re-list heads and retry. @default 5000 */
  readonly pollIntervalMs?: number | undefined;
  /** Where the state file lives. @default the log's directory, through the log's filesystem */
  readonly stateDir?: string | undefined;
  readonly fs?: LogFileSystem | undefined;
  /** The XChaCha20-Poly1305 implementation (all give the same bytes; see `@weft/eventlog`'s `loadXChaCha`). @default 'auto' */
  readonly cipher?: CipherName | undefined;
  readonly clock?: (() => number) | undefined;
  readonly faults?: SyncFaultHooks | undefined;
  /**
   * How a device with an empty log starts: from the current snapshot (then
   * the changesets after it), or by replaying every changeset.
   * @default 'snapshot'
   */
  readonly bootstrap?: 'snapshot' | 'replay' | undefined;
}

const libraryIdPattern = /^[A-Za-z0-9_-]{1,128}$/;

/** @throws {SyncError} `InvalidArgument` when the id is not a valid store id */
export function assertLibraryId(id: unknown, what: string): asserts id is string {
  if (typeof id !== 'string' || !libraryIdPattern.test(id)) {
    throw new SyncError(SyncErrorCode.InvalidArgument, `${what} must match [A-Za-z0-9_-]{1,128}`);
  }
}

/** @throws {SyncError} `InvalidArgument` when the library config does not fit the device */
export function assertLibraryConfig(library: LibraryConfig, identity: DeviceIdentity): void {
  assertLibraryId(library?.id, 'library.id');
  if (library.founder === undefined) {
    if (!(library.key instanceof Uint8Array) || library.key.length !== 32) {
      throw new SyncError(
        SyncErrorCode.InvalidArgument,
        'give library.founder (membership chain), or library.key (32 bytes) and library.members',
      );
    }
    if (!(library.members ?? []).some((member) => member.deviceId === identity.deviceId)) {
      throw new SyncError(SyncErrorCode.InvalidArgument, `device ${identity.deviceId} is not a member of library ${library.id}`);
    }
  } else if (library.key !== undefined || library.members !== undefined) {
    throw new SyncError(
      SyncErrorCode.InvalidArgument,
      'a library with a founder takes its members and keys from the store; do not pass key or members',
    );
  }
}
