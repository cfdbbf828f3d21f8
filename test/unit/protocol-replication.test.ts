import { describe, expect, it } from 'vitest';
import { parseLsn } from '../../src/core/lsn.js';
import { parseCopyData, pgTimeToMs, standbyStatusUpdate } from '../../src/sources/postgres/protocol.js';

// PostgreSQL docs, "Streaming Replication Protocol":
//   XLogData (B):   Byte1('w') Int64 walStart  Int64 walEnd  Int64 sendTime  Byten payload
//   Keepalive (B):  Byte1('k') Int64 walEnd    Int64 sendTime Byte1 replyRequested
//   Standby status update (F):
//                   Byte1('r') Int64 written   Int64 flushed  Int64 applied  Int64 clock  Byte1 replyRequested
// Timestamps are microseconds since 2000-01-01 00:00:00 UTC.

const PG_EPOCH_MS = Date.UTC(2000, 0, 1);

function xlogData(walStart: bigint, walEnd: bigint, sendTimeUs: bigint, payload: Buffer): Buffer {
  const head = Buffer.alloc(25);
  head[0] = 'w'.charCodeAt(0);
  head.writeBigUInt64BE(walStart, 1);
  head.writeBigUInt64BE(walEnd, 9);
  head.writeBigInt64BE(sendTimeUs, 17);
  return Buffer.concat([head, payload]);
}

function keepalive(walEnd: bigint, sendTimeUs: bigint, reply: number): Buffer {
  const buf = Buffer.alloc(18);
  buf[0] = 'k'.charCodeAt(0);
  buf.writeBigUInt64BE(walEnd, 1);
  buf.writeBigInt64BE(sendTimeUs, 9);
  buf[17] = reply;
  return buf;
}

describe('parseCopyData', () => {
  it('reads an XLogData header and hands over the payload', () => {
    const payload = Buffer.from([0x42, 1, 2, 3, 0xff]);
    const msg = parseCopyData(xlogData(0x16b374d848n, 0x16b374d900n, 123_456_789n, payload));
    expect(msg?.kind).toBe('xlogdata');
    if (msg?.kind !== 'xlogdata') return;
    expect(msg.walStart).toBe(parseLsn('16/B374D848'));
    expect(msg.walEnd).toBe(parseLsn('16/B374D900'));
    expect([...msg.payload]).toEqual([...payload]);
  });

  it('reads an XLogData with an empty payload', () => {
    const msg = parseCopyData(xlogData(1n, 2n, 0n, Buffer.alloc(0)));
    expect(msg).toMatchObject({ kind: 'xlogdata', walStart: 1n, walEnd: 2n });
    expect(msg!.kind === 'xlogdata' && msg!.payload.length).toBe(0);
  });

  it('reads the full 64-bit LSN range', () => {
    const max = (1n << 64n) - 1n;
    const msg = parseCopyData(xlogData(max, max, 0n, Buffer.from('x')));
    expect(msg).toMatchObject({ kind: 'xlogdata', walStart: max, walEnd: max });
  });

  const keepalives: Array<{ reply: number; expected: boolean }> = [
    { reply: 0, expected: false },
    { reply: 1, expected: true },
  ];

  it.each(keepalives)('reads a keepalive with reply byte $reply', ({ reply, expected }) => {
    const msg = parseCopyData(keepalive(0xabcdef0123n, 789_000_000n, reply));
    expect(msg).toEqual({ kind: 'keepalive', walEnd: 0xabcdef0123n, replyRequested: expected });
  });

  const ignored: Array<{ name: string; chunk: Buffer }> = [
    { name: 'empty chunk', chunk: Buffer.alloc(0) },
    { name: 'unknown tag', chunk: Buffer.concat([Buffer.from('x'), Buffer.alloc(30)]) },
    { name: 'short XLogData', chunk: xlogData(1n, 2n, 3n, Buffer.alloc(0)).subarray(0, 24) },
    { name: 'short keepalive', chunk: keepalive(1n, 2n, 1).subarray(0, 17) },
  ];

  it.each(ignored)('returns null for $name', ({ chunk }) => {
    expect(parseCopyData(chunk)).toBeNull();
  });
});

describe('standbyStatusUpdate', () => {
  it('writes the documented layout', () => {
    const nowMs = Date.UTC(2024, 4, 17, 12, 30, 45, 678);
    const buf = standbyStatusUpdate(parseLsn('16/B374D900'), parseLsn('16/B374D848'), nowMs, true);
    expect(buf.length).toBe(34);
    expect(buf[0]).toBe('r'.charCodeAt(0));
    expect(buf.readBigUInt64BE(1)).toBe(0x16b374d900n); // written
    expect(buf.readBigUInt64BE(9)).toBe(0x16b374d848n); // flushed
    expect(buf.readBigUInt64BE(17)).toBe(0x16b374d848n); // applied: the same as flushed
    expect(buf.readBigInt64BE(25)).toBe(BigInt(nowMs - PG_EPOCH_MS) * 1000n);
    expect(buf[33]).toBe(1);
  });

  it('writes reply byte 0 by default and a zero clock at the PostgreSQL epoch', () => {
    const buf = standbyStatusUpdate(parseLsn('0/0'), parseLsn('0/0'), PG_EPOCH_MS);
    expect(buf[33]).toBe(0);
    expect(buf.readBigInt64BE(25)).toBe(0n);
    expect(buf.subarray(1, 33).every((b) => b === 0)).toBe(true);
  });

  it('drops sub-millisecond fractions of the clock', () => {
    const buf = standbyStatusUpdate(parseLsn('0/1'), parseLsn('0/1'), PG_EPOCH_MS + 1.9);
    expect(buf.readBigInt64BE(25)).toBe(1000n);
  });
});

describe('pgTimeToMs', () => {
  const PG_EPOCH_MS = 946_684_800_000;
  const at = (us: bigint) => {
    const buf = Buffer.alloc(12);
    buf.writeBigInt64BE(us, 2);
    return pgTimeToMs(buf, 2);
  };
  it.each([
    { us: 0n, ms: PG_EPOCH_MS },
    { us: 1_999n, ms: PG_EPOCH_MS + 1 },
    // 2024-05-17T12:30:45.678123Z
    { us: 1_715_949_045_678_123n - 946_684_800_000_000n, ms: 1_715_949_045_678 },
    // Before 2000: negative on the wire.
    { us: -1_000n, ms: PG_EPOCH_MS - 1 },
    // 2200-01-01, well past 2^32 ms.
    { us: 7_258_118_400_000_000n - 946_684_800_000_000n, ms: 7_258_118_400_000 },
  ])('$us µs after 2000-01-01 -> $ms ms after 1970', ({ us, ms }) => {
    expect(at(us)).toBe(ms);
  });
});
