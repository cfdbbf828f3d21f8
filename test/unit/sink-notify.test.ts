import { describe, expect, it } from 'vitest';
import { notificationMessages } from '../../src/sinks/redis/notify.js';

type Payload = { keys: string[]; tags: string[]; patterns: string[] };
const parse = (messages: string[]) => messages.map((m) => JSON.parse(m) as Payload);

describe('notificationMessages', () => {
  it('sends one message with all three fields', () => {
    expect(parse(notificationMessages({ keys: ['p:user:1', 'p:users:version'], tags: ['category:7'], patterns: ['p:products:*'] }))).toEqual([
      { keys: ['p:user:1', 'p:users:version'], tags: ['category:7'], patterns: ['p:products:*'] },
    ]);
    expect(parse(notificationMessages({ keys: ['k'], tags: [], patterns: [] }))).toEqual([{ keys: ['k'], tags: [], patterns: [] }]);
  });

  it('sends nothing when nothing was invalidated', () => {
    expect(notificationMessages({ keys: [], tags: [], patterns: [] })).toEqual([]);
  });

  it('puts at most the limit of entries, of all kinds together, in one message', () => {
    const keys = Array.from({ length: 7 }, (_, i) => `k${i}`);
    expect(parse(notificationMessages({ keys, tags: ['t1', 't2'], patterns: ['p1'] }, 3))).toEqual([
      { keys: ['k0', 'k1', 'k2'], tags: [], patterns: [] },
      { keys: ['k3', 'k4', 'k5'], tags: [], patterns: [] },
      { keys: ['k6'], tags: ['t1', 't2'], patterns: [] },
      { keys: [], tags: [], patterns: ['p1'] },
    ]);
  });

  it('defaults to 1000 entries a message and loses none', () => {
    const keys = Array.from({ length: 2500 }, (_, i) => `k${i}`);
    const payloads = parse(notificationMessages({ keys, tags: ['t'], patterns: [] }));
    expect(payloads.map((p) => p.keys.length + p.tags.length)).toEqual([1000, 1000, 501]);
    expect(payloads.flatMap((p) => p.keys)).toEqual(keys);
  });

  it('carries any characters through JSON', () => {
    const keys = ['a"b', 'line\nbreak', 'ünï', 'x\\*'];
    expect(parse(notificationMessages({ keys, tags: [], patterns: [] }))[0]!.keys).toEqual(keys);
  });
});
