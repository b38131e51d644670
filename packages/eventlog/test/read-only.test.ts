import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EventLogError, openEventLog } from '@weft/eventlog';
import { describe, expect, it } from 'vitest';

const kind = 0x1001;
const bytes = (text: string) => new TextEncoder().encode(text);
const text = (value: Uint8Array) => new TextDecoder().decode(value);

describe('read-only access next to a writer', () => {
  it('reads without the lock, picks up new appends and segments, and tails them; never writes', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'weft-ro-'));
    try {
      const writer = await openEventLog({ dir, segmentBytes: 600, encryption: {} });
      for (let index = 0; index < 5; index++) await writer.append({ entity: 'e', kind, payload: bytes(`before ${index}`) });
      const reader = await openEventLog({ dir, readOnly: true, pollIntervalMs: 20, encryption: {} });
      expect(reader.head).toBe(5);
      const refused = await reader.append({ entity: 'e', kind, payload: bytes('x') }).catch((error: unknown) => error);
      expect(EventLogError.is(refused, 'InvalidArgument')).toBe(true);

      const tailed: string[] = [];
      const controller = new AbortController();
      const tail = (async () => {
        for await (const item of reader.subscribe({ from: 6, signal: controller.signal })) {
          if (item.type === 'event') tailed.push(text(item.event.payload));
          if (tailed.length === 10) controller.abort();
        }
      })();
      for (let index = 0; index < 10; index++) await writer.append({ entity: `new-${index}`, kind, payload: bytes(`after ${index}`) });
      await tail;
      expect(tailed).toEqual(Array.from({ length: 10 }, (_, index) => `after ${index}`));
      expect(reader.head).toBe(15);
      expect((await reader.verify()).ok).toBe(true);
      await reader.close();
      await writer.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
