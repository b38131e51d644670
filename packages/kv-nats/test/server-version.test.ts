import { conditionalWritesUnsupported, parseServerVersion } from '@weft/kv-nats';
import { describe, expect, it } from 'vitest';

describe('server version gates', () => {
  it('refuses compare-and-swap only on replicated streams of servers before 2.9.21 (nats-server#4319)', () => {
    expect(conditionalWritesUnsupported(parseServerVersion('2.9.10'), 3)).toContain('nats-server 2.9.21 or newer, connected to 2.9.10');
    expect(conditionalWritesUnsupported(parseServerVersion('2.9.20'), 2)).toBeDefined();
    expect(conditionalWritesUnsupported(parseServerVersion('2.9.10'), 1)).toBeUndefined();
    expect(conditionalWritesUnsupported(parseServerVersion('2.9.21'), 3)).toBeUndefined();
    expect(conditionalWritesUnsupported(parseServerVersion('2.12.15'), 3)).toBeUndefined();
    // An unreadable version counts as the oldest.
    expect(conditionalWritesUnsupported(parseServerVersion('garbage'), 3)).toBeDefined();
  });
});
