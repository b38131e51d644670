/**
 * A device's view of its library: the membership derived from the signed
 * chain in the store (or the static members of an out-of-band library), the
 * library keys it holds by generation, and the owner's writes of entries and
 * key wraps.
 */
import { randomBytes } from 'node:crypto';
import { defaultXChaCha, type Hashers, nobleXChaCha, nodeXChaCha, type XChaCha } from '@weft/eventlog';
import { KvError, KvErrorCode, type KvStore } from '@weft/kv';
import { assertLibraryId, invitationOf, type LibraryConfig } from './config.js';
import { SyncError, SyncErrorCode } from './errors.js';
import type { DeviceIdentity } from './identity.js';
import { decodeKeyWrap, unwrapKey, wrapKey } from './keys.js';
import {
  decodeMembershipEntry,
  deriveMembership,
  encodeMembershipEntry,
  type Member,
  type MembershipEntry,
  type MembershipFields,
  type MembershipState,
} from './membership.js';
import type { StatusBoard } from './status.js';
import { keyWrapKey, membershipKey, membershipPrefix, minSchemaVersionKey } from './store-layout.js';

/** The cipher a `cipher` option names. */
export function cipherOf(option: 'node' | 'noble' | undefined): XChaCha {
  return option === 'noble' ? nobleXChaCha : option === 'node' ? nodeXChaCha : defaultXChaCha();
}

/** Membership, roles and key generations as this device knows them. */
export class Library {
  readonly config: LibraryConfig;
  /** Library keys by generation. */
  readonly keys = new Map<number, Uint8Array>();
  readonly #entries = new Map<string, MembershipEntry>();
  #membership: MembershipState | undefined;
  /** Out-of-band mode: the static members. */
  readonly #staticMembers: Map<string, Uint8Array>;
  readonly #kv: KvStore;
  readonly #identity: DeviceIdentity;
  readonly #hashers: Hashers;
  readonly #cipher: XChaCha;
  readonly #board: StatusBoard;
  readonly #schemaVersion: number;

  constructor(options: {
    config: LibraryConfig;
    kv: KvStore;
    identity: DeviceIdentity;
    hashers: Hashers;
    cipher: XChaCha;
    board: StatusBoard;
    schemaVersion: number;
  }) {
    this.config = options.config;
    this.#kv = options.kv;
    this.#identity = options.identity;
    this.#hashers = options.hashers;
    this.#cipher = options.cipher;
    this.#board = options.board;
    this.#schemaVersion = options.schemaVersion;
    this.#staticMembers = new Map((options.config.members ?? []).map((member) => [member.deviceId, member.publicKey]));
    if (options.config.key !== undefined) this.keys.set(options.config.keyGeneration ?? 0, options.config.key);
  }

  get id(): string {
    return this.config.id;
  }

  /** The membership derived from the chain (`undefined` before the first refresh, and in out-of-band mode). */
  get membership(): MembershipState | undefined {
    return this.#membership;
  }

  /** The key generation new changesets are sealed with. */
  generation(): number {
    return this.#membership?.generation ?? this.config.keyGeneration ?? 0;
  }

  /** A key generation was announced that this device does not hold yet. */
  rotationPending(): boolean {
    return this.config.founder !== undefined && !this.keys.has(this.generation());
  }

  member(device: string): Member | undefined {
    if (this.config.founder !== undefined) return this.#membership?.members.get(device);
    const publicKey = this.#staticMembers.get(device);
    return publicKey === undefined
      ? undefined
      : { deviceId: device, publicKey, x25519PublicKey: new Uint8Array(32), role: 'member', removedAfter: undefined };
  }

  /** Reads the minimum schema version, the membership chain and the key wraps addressed to this device. */
  async refresh(): Promise<void> {
    const minimum = await this.#kv.get(minSchemaVersionKey);
    if (minimum !== undefined) {
      const required = Number(new TextDecoder().decode(minimum.value));
      if (Number.isSafeInteger(required) && required > this.#schemaVersion) {
        throw new SyncError(
          SyncErrorCode.SchemaTooOld,
          `library ${this.config.id} requires schema version ${required}; this device is at ${this.#schemaVersion}: upgrade it before it syncs`,
        );
      }
    }
    const founder = this.config.founder;
    if (founder === undefined) return;
    for await (const entry of this.#kv.scan(membershipPrefix)) {
      if (this.#entries.has(entry.key)) continue;
      try {
        const decoded = decodeMembershipEntry(entry.value, this.#hashers);
        if (entry.key !== membershipKey(decoded.author, decoded.seq)) {
          throw new SyncError(SyncErrorCode.ChainBroken, `${entry.key} holds entry ${decoded.author}.${decoded.seq}`, {
            device: decoded.author,
          });
        }
        this.#entries.set(entry.key, decoded);
      } catch (error) {
        if (!SyncError.is(error)) throw error;
        this.#board.alarm(error);
      }
    }
    const membership = deriveMembership([...this.#entries.values()], founder);
    this.#membership = membership;
    if (!membership.members.has(this.#identity.deviceId)) return;
    for (let generation = 0; generation <= membership.generation; generation++) {
      if (this.keys.has(generation)) continue;
      const stored = await this.#kv.get(keyWrapKey(this.#identity.deviceId, generation));
      if (stored === undefined) continue;
      try {
        this.keys.set(generation, this.#openWrap(stored.value, generation, membership));
      } catch (error) {
        if (!SyncError.is(error)) throw error;
        this.#board.alarm(error);
      }
    }
  }

  #openWrap(bytes: Uint8Array, generation: number, membership: MembershipState): Uint8Array {
    const device = this.#identity.deviceId;
    const wrap = decodeKeyWrap(bytes);
    const author = membership.members.get(wrap.author);
    const trusted =
      wrap.member === device &&
      wrap.generation === generation &&
      author !== undefined &&
      membership.everOwners.has(wrap.author) &&
      Buffer.from(author.publicKey).equals(Buffer.from(wrap.authorKey));
    if (!trusted)
      throw new SyncError(SyncErrorCode.Forged, `${keyWrapKey(device, generation)} is not a key wrap from an owner`, {
        device: wrap.author,
      });
    const key = unwrapKey(wrap, this.#identity, this.config.id, this.#cipher);
    if (key === undefined)
      throw new SyncError(SyncErrorCode.DecryptionFailed, `${keyWrapKey(device, generation)} does not open`, {
        device: wrap.author,
      });
    return key;
  }

  /** @throws {SyncError} `NotAllowed` unless this device is a current owner of a library with a founder */
  assertOwner(): MembershipState {
    const membership = this.#membership;
    const self = membership?.members.get(this.#identity.deviceId);
    if (membership === undefined || self === undefined || self.role !== 'owner' || self.removedAfter !== undefined) {
      throw new SyncError(SyncErrorCode.NotAllowed, 'only an owner of a library with a founder can change its membership');
    }
    return membership;
  }

  /** Writes a membership entry as the next of this device's, parented on every tip it knows. */
  async writeEntry(fields: Omit<MembershipFields, 'author' | 'seq' | 'parents'>): Promise<void> {
    const device = this.#identity.deviceId;
    for (let attempt = 0; attempt < 10; attempt++) {
      const membership = this.assertOwner();
      const seq = (membership.authorSeqs.get(device) ?? 0) + 1;
      const bytes = encodeMembershipEntry({ ...fields, author: device, seq, parents: membership.tips }, this.#identity);
      try {
        await this.#kv.create(membershipKey(device, seq), bytes);
        await this.refresh();
        return;
      } catch (error) {
        if (!KvError.is(error, KvErrorCode.AlreadyExists) && !KvError.is(error, KvErrorCode.Indeterminate)) throw error;
        const existing = await this.#kv.get(membershipKey(device, seq));
        await this.refresh();
        if (existing !== undefined && Buffer.from(existing.value).equals(Buffer.from(bytes))) return;
      }
    }
    throw new SyncError(SyncErrorCode.StateFailed, 'could not write the membership entry');
  }

  /** Wraps `key` of `generation` for a member at `keys.<member>.<generation>`. */
  async writeWrap(member: { deviceId: string; x25519PublicKey: Uint8Array }, generation: number, key: Uint8Array): Promise<void> {
    const keyPath = keyWrapKey(member.deviceId, generation);
    for (let attempt = 0; attempt < 5; attempt++) {
      try {
        await this.#kv.create(keyPath, wrapKey(key, generation, member, this.#identity, this.config.id, this.#cipher));
        return;
      } catch (error) {
        if (KvError.is(error, KvErrorCode.AlreadyExists)) return;
        // The create may have landed: a wrap that is there is as good as ours.
        if (!KvError.is(error, KvErrorCode.Indeterminate)) throw error;
        if ((await this.#kv.get(keyPath)) !== undefined) return;
      }
    }
  }
}

/**
 * Creates a library in `kv` with `identity` as its founder and first owner:
 * writes the genesis membership entry and the first key generation, wrapped
 * for the founder. Other devices open sync with the returned config and are
 * added with `addMember`.
 *
 * @throws {SyncError} `InvalidArgument`, `Fork` when the library exists with another founder
 */
export async function createLibrary(options: {
  kv: KvStore;
  identity: DeviceIdentity;
  id: string;
  cipher?: 'node' | 'noble';
}): Promise<LibraryConfig> {
  const { kv, identity, id } = options;
  assertLibraryId(id, 'library id');
  const cipher = cipherOf(options.cipher);
  const self = invitationOf(identity);
  const existing = await kv.get(membershipKey(identity.deviceId, 1));
  if (existing === undefined) {
    const wrap = await kv.get(keyWrapKey(identity.deviceId, 0));
    if (wrap === undefined) await kv.create(keyWrapKey(identity.deviceId, 0), wrapKey(randomBytes(32), 0, self, identity, id, cipher));
    const genesis = encodeMembershipEntry(
      {
        op: 'add',
        author: identity.deviceId,
        seq: 1,
        parents: [],
        subject: identity.deviceId,
        subjectKey: identity.publicKey,
        subjectX25519: self.x25519PublicKey,
        role: 'owner',
        keyGeneration: 0,
        cutoff: 0,
      },
      identity,
    );
    await kv.create(membershipKey(identity.deviceId, 1), genesis);
  }
  return { id, founder: { deviceId: identity.deviceId, publicKey: identity.publicKey } };
}
