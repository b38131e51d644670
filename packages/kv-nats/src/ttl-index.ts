/**
 * TTLs on servers without per-message TTL: a put with a TTL carries its
 * expiry in a header, and an entry per key in the bucket's companion stream
 * (`$WEFT.<bucket>.ttl.<key>`, one message per subject) indexes it for the
 * sweepers, which replace a passed TTL with an `expire` delete marker by
 * compare-and-swap.
 */
import { AckPolicy, type ConsumerInfo, DeliverPolicy, JetStreamApiCodes, JetStreamApiError } from '@nats-io/jetstream';
import { headers as makeHeaders, nanos, nuid } from '@nats-io/nats-core';
import { KvError } from '@weft/kv';
import { KvErrorCode } from '@weft/kv/backend';
import { expired, keyHeader, weftOpHeader } from './codec.js';
import type { NatsDriver } from './driver.js';
import { toKvError } from './errors.js';

const fetchExpiresMs = 5000;

/** Indexes a TTL'd put of `key` for the sweepers (written before the put itself). */
export async function publishTtlIndexEntry(driver: NatsDriver, key: string, expiresAt: number): Promise<void> {
  await ensureMetaStream(driver);
  await driver.call(key, () =>
    driver.parts.client.publish(driver.subjects.ttl(key), new TextEncoder().encode(String(expiresAt)), { timeout: driver.parts.timeoutMs }),
  );
}

/**
 * Turns every entry whose TTL has passed into an `expire` event: a delete
 * marker written only if the entry is still the key's latest message.
 *
 * @returns how many entries expired
 */
export async function sweepExpired(driver: NatsDriver): Promise<number> {
  const due: Array<{ key: string; expiresAt: number; seq: number }> = [];
  const now = Date.now();
  const index = await ttlIndex(driver);
  driver.ttlIndexEmpty = index.length === 0;
  for (const entry of index) if (entry.expiresAt <= now) due.push(entry);
  let expiredCount = 0;
  for (const entry of due) {
    const current = await driver.lastMessage(entry.key);
    if (current !== undefined && current.op === 'put' && current.expiresAt === entry.expiresAt) {
      if (await writeExpireMarker(driver, entry.key, current.seq, 'sweepExpired')) expiredCount++;
    }
    // Removes this index entry only, never a newer one written for the key since.
    await driver.call(entry.key, () =>
      driver.parts.manager.streams.purge(driver.subjects.metaStream, { filter: driver.subjects.ttl(entry.key), seq: entry.seq + 1 }),
    );
  }
  return expiredCount;
}

/** With `expireBeforeNextWrite`: writes the expire marker of the key's passed, unswept TTL, if it has one. */
export async function settleLapsed(driver: NatsDriver, key: string): Promise<void> {
  if (!driver.capabilities.expireBeforeNextWrite) return;
  const current = await driver.lastMessage(key);
  if (current !== undefined && expired(current)) await writeExpireMarker(driver, key, current.seq, 'settleExpired');
}

/**
 * Replaces the key's latest message, `seq` (a put whose TTL passed), with an
 * expire marker, by compare-and-swap on it. False when something was
 * written meanwhile: the newer write replaced the value, nothing to expire.
 */
export async function writeExpireMarker(driver: NatsDriver, key: string, seq: number, operation: string): Promise<boolean> {
  const headers = makeHeaders();
  headers.set(keyHeader, 'DEL');
  headers.set(weftOpHeader, 'expire');
  try {
    await driver.publish(key, new Uint8Array(0), operation, { lastSubjectSequence: seq }, undefined, headers);
    return true;
  } catch (error) {
    if (!KvError.is(error, KvErrorCode.RevisionMismatch)) throw error;
    return false;
  }
}

/** The companion stream `WEFT_<bucket>`: the compaction horizon and the TTL index, one message per subject. */
export async function ensureMetaStream(driver: NatsDriver): Promise<void> {
  if (driver.metaStreamReady) return;
  const { manager } = driver.parts;
  const name = driver.subjects.metaStream;
  await driver.call(undefined, async () => {
    try {
      await manager.streams.info(name);
    } catch (error) {
      if (!(error instanceof JetStreamApiError && error.code === JetStreamApiCodes.StreamNotFound)) throw error;
      try {
        await manager.streams.add({
          name,
          subjects: [driver.subjects.metaWildcard],
          max_msgs_per_subject: 1,
          num_replicas: driver.parts.info.config.num_replicas,
        });
      } catch (addError) {
        // Another handle created it first.
        if (!(addError instanceof JetStreamApiError && addError.code === 10058)) throw addError;
      }
    }
  });
  driver.metaStreamReady = true;
}

/** Every TTL index entry of the bucket, read with a short-lived consumer on the companion stream. */
async function ttlIndex(driver: NatsDriver): Promise<Array<{ key: string; expiresAt: number; seq: number }>> {
  const { manager, client } = driver.parts;
  const stream = driver.subjects.metaStream;
  const prefix = driver.subjects.ttlPrefix;
  const name = `weft_ttl_${nuid.next()}`;
  let created: ConsumerInfo;
  try {
    // One cheap request when no key has a TTL: the consumer below is created only when there are entries.
    const info = await manager.streams.info(stream, { subjects_filter: `${prefix}>` });
    if (Object.keys(info.state.subjects ?? {}).length === 0) return [];
    created = await manager.consumers.add(stream, {
      name,
      ack_policy: AckPolicy.None,
      mem_storage: true,
      num_replicas: 1,
      inactive_threshold: nanos(30_000),
      filter_subject: `${prefix}>`,
      deliver_policy: DeliverPolicy.LastPerSubject,
    });
  } catch (error) {
    if (error instanceof JetStreamApiError && error.code === JetStreamApiCodes.StreamNotFound) return [];
    throw toKvError(error, 'sweepExpired', undefined, false);
  }
  const entries: Array<{ key: string; expiresAt: number; seq: number }> = [];
  try {
    let pending = created.num_pending;
    const consumer = await client.consumers.get(stream, name);
    while (pending > 0) {
      const batch = await consumer.fetch({ max_messages: Math.min(pending, 1000), expires: fetchExpiresMs });
      let received = 0;
      for await (const message of batch) {
        received++;
        pending = message.info.pending;
        const expiresAt = Number(new TextDecoder().decode(message.data));
        if (Number.isSafeInteger(expiresAt) && message.subject.startsWith(prefix)) {
          entries.push({ key: message.subject.slice(prefix.length), expiresAt, seq: message.info.streamSequence });
        }
      }
      if (received === 0) break;
    }
  } catch (error) {
    throw toKvError(error, 'sweepExpired', undefined, false);
  } finally {
    await manager.consumers.delete(stream, name).catch(() => undefined);
  }
  return entries;
}
