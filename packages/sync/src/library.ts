/**
 * A device's view of its library: the membership derived from the signed
 * chain in the store (or the static members of an out-of-band library), the
 * library keys it holds by generation, and the owner's writes of entries and
 * key wraps.
 */
import { bytesEqual, fromBase64, randomBytes, toBase64, toHex } from '@weft/common';
import { type CipherName, type Hashers, loadXChaCha, type XChaCha } from '@weft/eventlog';
import { KvError, KvErrorCode, type KvStore } from '@weft/kv';
import { assertLibraryId, invitationOf, type LibraryConfig } from './config.js';
import { SyncError, SyncErrorCode } from './errors.js';
import { isCasRetry } from './heads.js';
import type { DeviceIdentity } from './identity.js';
import { decodeKeyWrap, keyCommitment, unwrapKey, wrapKey } from './keys.js';
import {
  decodeMembershipEntry,
  encodeMembershipEntry,
  type Member,
  type MembershipEntry,
  type MembershipFields,
  type MembershipState,
} from './membership.js';
import { deriveMembership, membershipAt, newMembershipCache } from './membership-derive.js';
import type { StateFile, SyncStateData } from './state.js';
import { countField, decodeStatement, type Statement, type StatementKind } from './statements.js';
import type { StatusBoard } from './status.js';
import { keyWrapKey, membershipKey, membershipPrefix, minSchemaVersionKey } from './store-layout.js';

/** Membership, roles and key generations as this device knows them. */
export class Library {
  readonly config: LibraryConfig;
  /** Library keys by generation. */
  readonly keys = new Map<number, Uint8Array>();
  /** Every entry this device verified, by store key, with its bytes: persisted, never dropped. */
  readonly #entries = new Map<string, { entry: MembershipEntry; bytes: Uint8Array }>();
  readonly #cache = newMembershipCache();
  readonly #state: SyncStateData;
  readonly #stateFile: StateFile;
  #loaded = false;
  /** The store lost membership entries since the last `takeForgotten`: an owner writes every member's key wraps again. */
  #forgotten = false;
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
    state: SyncStateData;
    stateFile: StateFile;
  }) {
    this.#state = options.state;
    this.#stateFile = options.stateFile;
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

  /**
   * The generation in force was created by concurrent rotations, so no key of it is adopted: an owner
   * that sees this rotates again (`rotateKey`).
   */
  rotationNeeded(): boolean {
    const membership = this.#membership;
    if (membership === undefined) return false;
    return membership.contested.has(membership.generation) && this.isActiveOwner(this.#identity.deviceId);
  }

  /** Whether the store lost membership entries since this was last asked (asking clears it). */
  takeForgotten(): boolean {
    const forgotten = this.#forgotten;
    this.#forgotten = false;
    return forgotten;
  }

  /** A key generation was announced that this device does not hold yet. */
  rotationPending(): boolean {
    if (this.#board.generationSeen > this.generation()) return true;
    return this.config.founder !== undefined && !this.keys.has(this.generation());
  }

  /** The membership at a position of the chain (see `membershipAt`); `undefined` when it is not known here. */
  stateAt(tips: readonly string[]): MembershipState | undefined {
    const founder = this.config.founder;
    if (founder === undefined) return undefined;
    return membershipAt(this.#entryList(), tips, founder, this.#cache);
  }

  /** Every device the library has had as a member (removed ones included). */
  memberIds(): string[] {
    if (this.config.founder === undefined) return [...this.#staticMembers.keys()];
    return [...(this.#membership?.members.keys() ?? [])];
  }

  /** A current owner: a member with the owner role, not removed. */
  isActiveOwner(device: string): boolean {
    const member = this.#membership?.members.get(device);
    return member !== undefined && member.role === 'owner' && member.removedAfter === undefined;
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
    await this.#refreshMembership();
    const minimum = await this.minSchemaVersion();
    if (minimum > this.#schemaVersion) {
      throw new SyncError(
        SyncErrorCode.SchemaTooOld,
        `library ${this.config.id} requires schema version ${minimum}; this device is at ${this.#schemaVersion}: upgrade it before it syncs`,
      );
    }
  }

  /**
   * Whether a statement counts: its author is a current owner (a member, out
   * of band) and signed with its member key. An owner's standing statements
   * lapse when it is removed.
   */
  authorises(statement: Statement): boolean {
    const member = this.member(statement.author);
    if (member === undefined || member.removedAfter !== undefined) return false;
    if (!bytesEqual(member.publicKey, statement.authorKey)) return false;
    return this.config.founder === undefined || member.role === 'owner';
  }

  /** Decodes an owner statement and checks who made it. @throws {SyncError} `InvalidEnvelope`, `Forged` */
  acceptStatement(bytes: Uint8Array, kind: StatementKind, keyPath: string): Statement {
    const statement = decodeStatement(bytes, kind, this.id);
    if (!this.authorises(statement)) {
      throw new SyncError(SyncErrorCode.Forged, `${keyPath} is signed by ${statement.author}, who is not an owner now`, {
        device: statement.author,
      });
    }
    return statement;
  }

  /** The library's minimum schema version (1 when unset); a value no owner signed is reported and ignored. */
  async minSchemaVersion(): Promise<number> {
    return this.minSchemaVersionIn(await this.#kv.get(minSchemaVersionKey));
  }

  /** The minimum schema version a stored `meta.min_schema_version` value says (1 when absent or not signed by an owner). */
  minSchemaVersionIn(stored: { readonly value: Uint8Array } | undefined): number {
    if (stored === undefined) return 1;
    try {
      return countField(this.acceptStatement(stored.value, 'min-schema', minSchemaVersionKey), 'version');
    } catch (error) {
      if (!SyncError.is(error)) throw error;
      this.#board.alarm(new SyncError(error.code, `${minSchemaVersionKey} is ignored: ${error.message}`, { device: error.device ?? '' }));
      return 1;
    }
  }

  #entryList(): MembershipEntry[] {
    return [...this.#entries.values()].map((known) => known.entry);
  }

  /** Decodes the entries this device verified before (its own knowledge, kept in the state file). */
  #loadKnown(): void {
    if (this.#loaded) return;
    this.#loaded = true;
    for (const encoded of this.#state.membership) {
      const bytes = fromBase64(encoded);
      try {
        const entry = decodeMembershipEntry(bytes, this.#hashers, this.config.id);
        this.#entries.set(membershipKey(entry.author, entry.seq), { entry, bytes });
      } catch (error) {
        if (!SyncError.is(error)) throw error;
        throw new SyncError(SyncErrorCode.StateFailed, `the sync state holds a membership entry that does not verify: ${error.message}`, {
          cause: error,
        });
      }
    }
  }

  /**
   * Reads the chain from the store and merges it into what this device
   * verified before. What the device knows is never dropped: an entry the
   * store lacks is an alarm and is written back; another entry at a key the
   * device already holds is an equivocation and is not taken.
   */
  async #refreshMembership(): Promise<void> {
    const founder = this.config.founder;
    if (founder === undefined) return;
    this.#loadKnown();
    const listed = new Set<string>();
    const learned: string[] = [];
    for await (const entry of this.#kv.scan(membershipPrefix)) {
      listed.add(entry.key);
      const known = this.#entries.get(entry.key);
      if (known !== undefined) {
        if (!bytesEqual(known.bytes, entry.value))
          this.#board.alarm(
            new SyncError(SyncErrorCode.Equivocation, `${entry.key} holds another entry than the one this device verified; it is ignored`, {
              device: known.entry.author,
              seq: known.entry.seq,
            }),
          );
        continue;
      }
      try {
        const decoded = decodeMembershipEntry(entry.value, this.#hashers, this.config.id);
        if (entry.key !== membershipKey(decoded.author, decoded.seq)) {
          throw new SyncError(SyncErrorCode.ChainBroken, `${entry.key} holds entry ${decoded.author}.${decoded.seq}`, {
            device: decoded.author,
          });
        }
        this.#entries.set(entry.key, { entry: decoded, bytes: entry.value });
        learned.push(toBase64(entry.value));
      } catch (error) {
        if (!SyncError.is(error)) throw error;
        this.#board.alarm(error);
      }
    }
    if (learned.length > 0) {
      this.#state.membership.push(...learned);
      await this.#stateFile.save(this.#state);
    }
    await this.#restoreEntries(listed);
    // Derived again only when the entries changed: a round that learned nothing keeps the membership it had.
    const membership =
      this.#membership === undefined || learned.length > 0 ? deriveMembership(this.#entryList(), founder, this.#cache) : this.#membership;
    this.#membership = membership;
    // A key that is not the one its generation committed to (a rotation that lost to a concurrent one) is dropped.
    for (const [generation, key] of this.keys) {
      const committed = membership.commitments.get(generation);
      if (committed !== toHex(keyCommitment(key, this.config.id, generation))) this.keys.delete(generation);
    }
    if (!membership.members.has(this.#identity.deviceId)) return;
    for (let generation = 0; generation <= membership.generation; generation++) {
      if (this.keys.has(generation) || !membership.commitments.has(generation)) continue;
      await this.#adoptKey(generation, membership);
    }
  }

  /** Writes back entries this device verified that the store no longer lists (it forgot or hides them). */
  async #restoreEntries(listed: ReadonlySet<string>): Promise<void> {
    const missing = [...this.#entries].filter(([key]) => !listed.has(key));
    if (missing.length === 0) return;
    this.#forgotten = true;
    this.#board.alarm(
      new SyncError(
        SyncErrorCode.StoreForgot,
        `the store lacks ${missing.length} membership ${missing.length === 1 ? 'entry' : 'entries'} this device verified (${missing[0]?.[0]}${missing.length > 1 ? ', ...' : ''}): written back`,
        { device: missing[0]?.[1].entry.author ?? '' },
      ),
    );
    for (const [key, known] of missing) {
      try {
        await this.#kv.create(key, known.bytes);
      } catch (error) {
        // Someone restored it first, or the store is down: the next refresh looks again.
        if (!KvError.is(error)) throw error;
      }
    }
  }

  /**
   * Opens this device's wrap of a generation: the one it kept from before
   * when there is one (the store may have lost or hidden it; it is written
   * back), else the store's, which is kept once it opens.
   */
  async #adoptKey(generation: number, membership: MembershipState): Promise<void> {
    const keyPath = keyWrapKey(this.#identity.deviceId, generation);
    const kept = this.#state.wraps[String(generation)];
    if (kept !== undefined) {
      const bytes = fromBase64(kept);
      try {
        this.keys.set(generation, this.#openWrap(bytes, generation, membership));
        const stored = await this.#kv.get(keyPath);
        if (stored === undefined)
          await this.#kv.create(keyPath, bytes).catch((error: unknown) => {
            if (!KvError.is(error)) throw error;
          });
        return;
      } catch (error) {
        if (!SyncError.is(error)) throw error;
        // A kept wrap that no longer counts (its generation was contested since) is dropped.
        delete this.#state.wraps[String(generation)];
      }
    }
    const stored = await this.#kv.get(keyPath);
    if (stored === undefined) return;
    try {
      this.keys.set(generation, this.#openWrap(stored.value, generation, membership));
      this.#state.wraps[String(generation)] = toBase64(stored.value);
      await this.#stateFile.save(this.#state);
    } catch (error) {
      if (!SyncError.is(error)) throw error;
      this.#board.alarm(error);
    }
  }

  /**
   * Opens this device's wrap of a generation: it counts only from a device
   * that was an owner while that generation was in force, and only when the
   * key inside matches the commitment of the entry that created the generation.
   */
  #openWrap(bytes: Uint8Array, generation: number, membership: MembershipState): Uint8Array {
    const device = this.#identity.deviceId;
    const keyPath = keyWrapKey(device, generation);
    const wrap = decodeKeyWrap(bytes);
    const author = membership.members.get(wrap.author);
    const authorised =
      wrap.member === device &&
      wrap.generation === generation &&
      author !== undefined &&
      membership.ownerGenerations.get(wrap.author)?.has(generation) === true &&
      bytesEqual(author.publicKey, wrap.authorKey);
    if (!authorised)
      throw new SyncError(SyncErrorCode.KeyCommitmentMismatch, `${keyPath} is not a key wrap from an owner of generation ${generation}`, {
        device: wrap.author,
        seq: generation,
      });
    const key = unwrapKey(wrap, this.#identity, this.config.id, this.#cipher);
    if (key === undefined)
      throw new SyncError(SyncErrorCode.DecryptionFailed, `${keyPath} does not open`, { device: wrap.author, seq: generation });
    const committed = membership.commitments.get(generation);
    const commitment = toHex(keyCommitment(key, this.config.id, generation));
    if (committed === undefined || committed !== commitment)
      throw new SyncError(
        SyncErrorCode.KeyCommitmentMismatch,
        `${keyPath} opens to a key that does not match the commitment of generation ${generation}: it is not used`,
        { device: wrap.author, seq: generation },
      );
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
      const bytes = encodeMembershipEntry({ ...fields, author: device, seq, parents: membership.tips }, this.#identity, this.config.id);
      try {
        await this.#kv.create(membershipKey(device, seq), bytes);
        await this.refresh();
        return;
      } catch (error) {
        if (!KvError.is(error, KvErrorCode.AlreadyExists) && !KvError.is(error, KvErrorCode.Indeterminate)) throw error;
        const existing = await this.#kv.get(membershipKey(device, seq));
        await this.refresh();
        if (existing !== undefined && bytesEqual(existing.value, bytes)) return;
      }
    }
    throw new SyncError(SyncErrorCode.StateFailed, 'could not write the membership entry');
  }

  /**
   * Writes this device's own wrap of `key` for a member at
   * `keys.<member>.<generation>`, replacing whatever is there with
   * compare-and-swap: a wrap planted by someone else is never left in place.
   */
  async writeWrap(member: { deviceId: string; x25519PublicKey: Uint8Array }, generation: number, key: Uint8Array): Promise<void> {
    const keyPath = keyWrapKey(member.deviceId, generation);
    const wrap = wrapKey(key, generation, member, this.#identity, this.config.id, this.#cipher);
    for (let attempt = 0; attempt < 20; attempt++) {
      const current = await this.#kv.get(keyPath);
      try {
        if (current === undefined) await this.#kv.create(keyPath, wrap);
        else if (!bytesEqual(current.value, wrap)) await this.#kv.update(keyPath, wrap, current.version);
        return;
      } catch (error) {
        if (!isCasRetry(error)) throw error;
        // Lost a race or the answer: read again; our own bytes there mean it landed.
      }
    }
    throw new SyncError(SyncErrorCode.StateFailed, `could not write the key wrap ${keyPath}`);
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
  cipher?: CipherName;
}): Promise<LibraryConfig> {
  const { kv, identity, id } = options;
  assertLibraryId(id, 'library id');
  const cipher = await loadXChaCha(options.cipher);
  const self = invitationOf(identity);
  const existing = await kv.get(membershipKey(identity.deviceId, 1));
  if (existing === undefined) {
    // The founder's own wrap of generation 0 is opened again rather than trusted: a retry after a crash
    // must commit to the key that is actually wrapped.
    let key: Uint8Array | undefined;
    const stored = await kv.get(keyWrapKey(identity.deviceId, 0));
    if (stored !== undefined) {
      const wrap = decodeKeyWrap(stored.value);
      if (wrap.author === identity.deviceId) key = unwrapKey(wrap, identity, id, cipher);
    }
    if (key === undefined) {
      key = randomBytes(32);
      const wrap = wrapKey(key, 0, self, identity, id, cipher);
      if (stored === undefined) await kv.create(keyWrapKey(identity.deviceId, 0), wrap);
      else await kv.update(keyWrapKey(identity.deviceId, 0), wrap, stored.version);
    }
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
        keyCommitment: keyCommitment(key, id, 0),
      },
      identity,
      id,
    );
    await kv.create(membershipKey(identity.deviceId, 1), genesis);
  }
  return { id, founder: { deviceId: identity.deviceId, publicKey: identity.publicKey } };
}
