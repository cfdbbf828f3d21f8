import HashRing from 'hashring';
import { describe, expect, it } from 'vitest';
import { KetamaRing } from '../../src/lib/memcached/ketama.js';
import { encode, encodeKey, parseReply, replyFlag } from '../../src/lib/memcached/meta-connection.js';
import { splitServer } from '../../src/lib/memcached/servers.js';
import { planOperations } from '../../src/sinks/memcached/memcached-sink.js';

/** Replies as memcached 1.6.18 wrote them to the commands beside them (recorded with `nc`). */
const RECORDED: Array<[command: string, reply: string]> = [
  ['mn', 'MN\r\n'],
  ['ms k1 2 T0 / hi', 'HD\r\n'],
  ['mg k1 v c t', 'VA 2 c1 t-1\r\nhi\r\n'],
  ['md k1 I T30', 'HD\r\n'],
  ['mg k1 v c (after md I: stale, this reader wins the refill)', 'VA 2 c2 X W\r\nhi\r\n'],
  ['mg k1 v c (another reader: stale, a refill is under way)', 'VA 2 c2 Z X\r\nhi\r\n'],
  ['mg nokey v N30 c (vivified: this reader fills)', 'VA 0 c3 W\r\n\r\n'],
  ['ma ctr N0 J5 v', 'VA 1\r\n5\r\n'],
  ['ms ver 2 C999', 'NF\r\n'],
  ['ms ver 2 ME (exists)', 'NS\r\n'],
  ['ms ver 2 E5 (no E flag in 1.6.18)', 'CLIENT_ERROR invalid flag\r\n'],
  ['version', 'VERSION 1.6.18\r\n'],
  ['bogus', 'ERROR\r\n'],
];

describe('meta protocol replies', () => {
  it('parses each recorded reply, whole', () => {
    const parsed = RECORDED.map(([, reply]) => parseReply(Buffer.from(reply, 'latin1')));
    expect(parsed.map((p) => p?.length)).toEqual(RECORDED.map(([, reply]) => reply.length));
    const replies = parsed.map((p) => p!.reply);
    expect(replies[2]).toEqual({ code: 'VA', flags: ['c1', 't-1'], value: Buffer.from('hi') });
    expect(replyFlag(replies[2]!, 'c')).toBe('1');
    expect(replyFlag(replies[2]!, 't')).toBe('-1');
    expect(replies[4]!.flags).toEqual(['c2', 'X', 'W']);
    expect(replies[6]).toEqual({ code: 'VA', flags: ['c3', 'W'], value: Buffer.alloc(0) });
    expect(replies[10]).toEqual({ code: 'CLIENT_ERROR', flags: [], error: 'CLIENT_ERROR invalid flag' });
    expect(replies[12]).toEqual({ code: 'ERROR', flags: [], error: 'ERROR' });
  });

  it('waits for the rest of a reply split anywhere, and takes one reply at a time from a pipeline', () => {
    const stream = Buffer.from(RECORDED.map(([, reply]) => reply).join(''), 'latin1');
    for (let cut = 0; cut < stream.length; cut++) {
      const head = stream.subarray(0, cut);
      const first = parseReply(head);
      if (first !== null) expect(first.length).toBeLessThanOrEqual(cut);
    }
    let rest = stream;
    const codes: string[] = [];
    for (let r = parseReply(rest); r !== null; r = parseReply(rest)) {
      codes.push(r.reply.code);
      rest = rest.subarray(r.length);
    }
    expect(codes).toEqual(['MN', 'HD', 'VA', 'HD', 'VA', 'VA', 'VA', 'VA', 'NF', 'NS', 'CLIENT_ERROR', 'VERSION', 'ERROR']);
    expect(rest.length).toBe(0);
    // A value holding "\r\n" is read by its length, not up to the first line end.
    expect(parseReply(Buffer.from('VA 4 c9\r\na\r\nb\r\nHD\r\n'))).toEqual({ reply: { code: 'VA', flags: ['c9'], value: Buffer.from('a\r\nb') }, length: 15 });
  });
});

describe('meta protocol commands', () => {
  const text = (parts: Buffer[]) => Buffer.concat(parts).toString('latin1');

  it('writes keys as they are, or base64 with the b flag when they hold spaces or other bytes', () => {
    expect(text(encode({ verb: 'md', key: 'user:1' }))).toBe('md user:1\r\n');
    expect(text(encode({ verb: 'md', key: 'comments:name=Ada Lovelace', flags: ['I', 'T30'] }))).toBe(
      `md ${Buffer.from('comments:name=Ada Lovelace').toString('base64')} I T30 b\r\n`,
    );
    expect(text(encode({ verb: 'ms', key: 'v', flags: ['C12', 'T60'], value: Buffer.from('42') }))).toBe('ms v 2 C12 T60\r\n42\r\n');
    expect(text(encode({ verb: 'mn' }))).toBe('mn\r\n');
    expect(encodeKey('é')).toEqual({ token: Buffer.from('é').toString('base64'), base64: true });
    expect(encodeKey('k'.repeat(250))).toEqual({ token: 'k'.repeat(250), base64: false });
    expect(encodeKey('k'.repeat(251))).toBeUndefined();
    expect(encodeKey('')).toBeUndefined();
    expect(() => encode({ verb: 'md', key: 'k'.repeat(300) })).toThrow('not a memcached key');
  });
});

describe('ketama: which server holds a key', () => {
  it('agrees with hashring (libketama) on 20,000 keys for 1 to 5 servers', () => {
    for (let n = 1; n <= 5; n++) {
      const servers = Array.from({ length: n }, (_, i) => `10.0.0.${i + 1}:${11211 + i}`);
      const ours = new KetamaRing(servers);
      const theirs = new HashRing(servers);
      for (let i = 0; i < 20_000; i++) {
        const key = `user:${i}:${(i * 2654435761) % 1000003}`;
        expect(ours.serverFor(key)).toBe(theirs.get(key));
      }
    }
  });

  it('spreads keys about evenly and moves only about 1/n of them when a server is added', () => {
    const three = new KetamaRing(['a:1', 'b:1', 'c:1']);
    const four = new KetamaRing(['a:1', 'b:1', 'c:1', 'd:1']);
    const counts = new Map<string, number>();
    let moved = 0;
    for (let i = 0; i < 30_000; i++) {
      const server = three.serverFor(`k${i}`);
      counts.set(server, (counts.get(server) ?? 0) + 1);
      if (four.serverFor(`k${i}`) !== server) moved++;
    }
    for (const count of counts.values()) expect(count).toBeGreaterThan(7_000);
    expect(moved / 30_000).toBeGreaterThan(0.15);
    expect(moved / 30_000).toBeLessThan(0.35);
  });
});

describe('the memcached sink plans a batch', () => {
  it('prefixes, drops duplicates, keeps the greatest version, and refuses tags and patterns', () => {
    expect(
      planOperations(
        [
          { action: 'delete', key: 'a' },
          { action: 'delete', key: 'a' },
          { action: 'bump', key: 'v', version: 5n },
          { action: 'bump', key: 'v', version: 9n },
          { action: 'bump', key: 'w', version: null },
        ],
        'p:',
      ),
    ).toEqual({ deletes: ['p:a'], bumpTo: [['p:v', '9']], increments: ['p:w'] });
    expect(() => planOperations([{ action: 'tag', tag: 't' }], '')).toThrow('memcached cannot act on tag "t": it has no sets and no SCAN');
  });

  it('reads server addresses as clients write them', () => {
    expect(splitServer('127.0.0.1:11311')).toEqual({ host: '127.0.0.1', port: 11311 });
    expect(splitServer('cache-1')).toEqual({ host: 'cache-1', port: 11211 });
    expect(splitServer('[::1]:11212')).toEqual({ host: '::1', port: 11212 });
  });
});
