import type { ChangeRequest, KvCommitMutation, KvDriver, KvMutation } from '../backend/driver.js';
import { alreadyExists, revisionMismatch } from '../errors.js';
import { keyMatchesPrefix } from '../keys.js';
import type { KvEntry, KvRecord, Version } from '../types.js';
import { backend, copy, type MemoryBucket, type StoredRecord } from './bucket.js';
import { MemoryChangeFeed } from './change-feed.js';
import { memoryCursors, parseSequence, versionOf } from './cursors.js';

/** The memory backend's driver: every primitive is a synchronous step on the shared bucket state. */
export class MemoryDriver implements KvDriver<number> {
  readonly backend = backend;
  readonly bucket: string;
  readonly capabilities;
  readonly cursors = memoryCursors;
  readonly #state: MemoryBucket;

  constructor(bucket: string, state: MemoryBucket) {
    this.bucket = bucket;
    this.#state = state;
    this.capabilities = state.capabilities;
  }

  now(): number {
    return this.#state.clock.now();
  }

  /** The latest sequence of the bucket (its head). */
  get head(): number {
    return this.#state.seq;
  }

  async get(key: string): Promise<KvEntry | undefined> {
    const record = this.#state.live(key);
    return record === undefined ? undefined : entryOf(key, record);
  }

  async entry(key: string): Promise<KvRecord | undefined> {
    const record = this.#state.current(key);
    if (record === undefined) return undefined;
    if (record.op === 'put') return { key, op: 'put', value: copy(record.value), version: versionOf(record.seq) };
    return { key, op: record.op, version: versionOf(record.seq) };
  }

  async *list(prefix: string | undefined): AsyncGenerator<KvEntry> {
    const state = this.#state;
    // A snapshot of the key names; each value is read when it is reached, as a paged backend would.
    const names = [...state.records.keys()].filter((key) => keyMatchesPrefix(key, prefix)).sort();
    for (const key of names) {
      const record = state.live(key);
      if (record !== undefined) yield entryOf(key, record);
    }
  }

  async mutate(mutation: KvMutation): Promise<Version> {
    const state = this.#state;
    const { key } = mutation;
    switch (mutation.kind) {
      case 'put':
        return versionOf(state.write(key, 'put', copy(mutation.value)));
      case 'putWithTtl':
        return versionOf(state.write(key, 'put', copy(mutation.value), mutation.ttlMs));
      case 'create': {
        const live = state.live(key);
        if (live !== undefined) throw alreadyExists(backend, key, versionOf(live.seq));
        return versionOf(state.write(key, 'put', copy(mutation.value)));
      }
      case 'update':
        this.#assertExpected(key, mutation.expected);
        return versionOf(state.write(key, 'put', copy(mutation.value)));
      case 'delete':
        return versionOf(state.write(key, 'delete', undefined));
      case 'deleteWithVersion':
        this.#assertExpected(key, mutation.expected);
        return versionOf(state.write(key, 'delete', undefined));
      case 'purge':
        return versionOf(state.write(key, 'purge', undefined));
    }
  }

  /**
   * Checks every precondition, then applies every write, in one synchronous
   * step: nothing else runs in between. Passed TTLs of the commit's keys are
   * settled first, so their expire events come before the commit's writes,
   * which follow one another with nothing between them.
   */
  async commit(mutations: readonly KvCommitMutation[]): Promise<Version[]> {
    for (const { key } of mutations) this.#state.settle(key);
    for (const mutation of mutations) this.#check(mutation);
    const versions: Version[] = [];
    for (const mutation of mutations) versions.push(this.#apply(mutation));
    return versions;
  }

  /** Throws the error of a commit's mutation whose precondition fails. */
  #check(mutation: KvCommitMutation): void {
    const { key } = mutation;
    if (mutation.kind === 'create') {
      const live = this.#state.live(key);
      if (live !== undefined) throw alreadyExists(backend, key, versionOf(live.seq));
    }
    if (mutation.kind === 'update' || mutation.kind === 'deleteWithVersion') this.#assertExpected(key, mutation.expected);
  }

  /** Writes a commit's mutation, its precondition already checked. */
  #apply(mutation: KvCommitMutation): Version {
    const state = this.#state;
    switch (mutation.kind) {
      case 'delete':
      case 'deleteWithVersion':
        return versionOf(state.write(mutation.key, 'delete', undefined));
      case 'putWithTtl':
        return versionOf(state.write(mutation.key, 'put', copy(mutation.value), mutation.ttlMs));
      default:
        return versionOf(state.write(mutation.key, 'put', copy(mutation.value)));
    }
  }

  changes(request: ChangeRequest<number>): MemoryChangeFeed {
    return new MemoryChangeFeed(this.#state, request);
  }

  async close(): Promise<void> {}

  /** CAS compares against the live version: absent, deleted, purged and expired all count as different. */
  #assertExpected(key: string, expected: Version): void {
    const expectedSeq = parseSequence(expected, 'version', key);
    const record = this.#state.live(key);
    if (record === undefined || record.seq !== expectedSeq)
      throw revisionMismatch(backend, key, expected, record === undefined ? undefined : versionOf(record.seq));
  }
}

function entryOf(key: string, record: StoredRecord): KvEntry {
  return { key, value: copy(record.value), version: versionOf(record.seq) };
}
