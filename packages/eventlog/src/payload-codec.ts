/**
 * The seam between the log and what it stores as a payload: plain bytes, or
 * (with encryption) sealed ones. Declared apart from both, so the log and
 * the encrypted codec each import it and not each other.
 */
import type { FrameHeader } from './codec.js';
import type { ShredTarget } from './crypto/keyset.js';
import type { EventId } from './ids.js';
import type { LogEvent } from './types.js';

/** The seam encryption plugs into (not a stable API): turns payloads into stored bytes and back. */
export interface PayloadCodec {
  /** Runs before any frame of a write is written (the encryption fence); a failure fails those appends and writes nothing. */
  beforeWrite?(): Promise<void>;
  /** Checks a frame found during recovery (an encrypted frame must have its key). */
  checkRecovered?(header: FrameHeader): void;
  /** Destroys keys durably; returns how many. */
  shred?(target: ShredTarget): Promise<number>;
  /** Read-only logs: reads keys the writer added since. */
  reload?(): Promise<void>;
  /** Seals a payload into `out` (an object the caller reuses; neither argument is kept). */
  seal(input: SealInput, out: Sealed): void;
  /** What reading the payload would give, without opening it: `plain`, `shredded`, or `sealed` for an encrypted payload left closed. */
  disposition(header: FrameHeader): 'plain' | 'shredded' | 'sealed';
  open(header: FrameHeader, stored: Uint8Array): { payload: Uint8Array; disposition: LogEvent['disposition'] };
}

/** What the payload codec sees of an event (not a stable API). */
export interface SealInput {
  readonly id: EventId;
  readonly entity: string;
  readonly scope: string;
  readonly kind: number;
  readonly payload: Uint8Array;
  readonly reserved: boolean;
}

/** What a seal gives (not a stable API): the bytes to store and the frame's encryption metadata. */
export interface Sealed {
  stored: Uint8Array;
  encryption: FrameHeader['encryption'];
}

/** Payloads stored as they are. */
export const plainCodec: PayloadCodec = {
  seal(input, out) {
    out.stored = input.payload;
    out.encryption = undefined;
  },
  disposition: (header) => (header.encryption === undefined ? 'plain' : 'sealed'),
  // Opened without its keyset, an encrypted payload is never handed out as if it were the plaintext.
  open: (header, stored) =>
    header.encryption === undefined ? { payload: stored, disposition: 'plain' } : { payload: new Uint8Array(0), disposition: 'sealed' },
};
