/** The one error type of `@weft/sync`. Callers branch on `code`. */

import { WeftError } from '@weft/common';
export const SyncErrorCode = {
  InvalidArgument: 'InvalidArgument',
  /** An envelope failed to decode. */
  InvalidEnvelope: 'InvalidEnvelope',
  /** A signature is missing or wrong, or the author is not a member. */
  Forged: 'Forged',
  /** A changeset does not continue its device's hash chain (dropped, reordered or replayed by the store). */
  ChainBroken: 'ChainBroken',
  /** A payload failed authentication: it was tampered with, or sealed for another place. */
  DecryptionFailed: 'DecryptionFailed',
  /** Two different changesets claim the same device and sequence. */
  Fork: 'Fork',
  /** A changeset needs a newer schema than this device supports. */
  SchemaTooNew: 'SchemaTooNew',
  /** A changeset the head announces is not in the store. */
  MissingChangeset: 'MissingChangeset',
  /** The sync handle is closed. */
  Closed: 'Closed',
  /** Persisting sync state failed. */
  StateFailed: 'StateFailed',
  /** A changeset written by a member after its removal (or by a reader). */
  Revoked: 'Revoked',
  /** This device's schema version is below the library's minimum: it must be upgraded before it syncs. */
  SchemaTooOld: 'SchemaTooOld',
  /** Changesets this device still needs were garbage-collected: bootstrap from the snapshot again. */
  RebootstrapRequired: 'RebootstrapRequired',
  /** Only an owner may do this (or the device was removed). */
  NotAllowed: 'NotAllowed',
  /** A blob is not (yet) in the store, or does not match its id. */
  BlobMissing: 'BlobMissing',
  /** A key wrap opens to a key that does not match its generation's commitment (or comes from no owner of it): never used. */
  KeyCommitmentMismatch: 'KeyCommitmentMismatch',
  /** A removed device's chain does not pass through the changeset its removal bound: its history was rewritten. */
  Equivocation: 'Equivocation',
  /** A changeset is missing inside a device's chain: a later one exists, or a head or an applied map says it should. */
  ChangesetGap: 'ChangesetGap',
  /**
   * The store lacks what this device verified or wrote before (membership entries, key wraps, changesets): it
   * forgot or hides them. They are written back with identical bytes.
   */
  StoreForgot: 'StoreForgot',
  /** A head went backwards against one seen before, or against what another member says it applied. */
  HeadRolledBack: 'HeadRolledBack',
  /** A snapshot is not authorised where it says it was made, or its cursors disagree with the changesets in the store. */
  SnapshotRejected: 'SnapshotRejected',
} as const;

export type SyncErrorCode = (typeof SyncErrorCode)[keyof typeof SyncErrorCode];

/** The error `@weft/sync` throws and reports in its status. */
export class SyncError extends WeftError<SyncErrorCode> {
  static override readonly brand: symbol = Symbol.for('@weft/sync/SyncError');
  override readonly name = 'SyncError';
  /** The device the problem is about, when there is one. */
  readonly device: string | undefined;
  /** The changeset sequence the problem is about, when there is one. */
  readonly seq: number | undefined;

  constructor(code: SyncErrorCode, message: string, options: { device?: string; seq?: number; cause?: unknown } = {}) {
    super(code, message, { cause: options.cause });
    this.device = options.device;
    this.seq = options.seq;
  }
}
