import { lsnFromBigInt, type Lsn } from '../../core/lsn.js';

/**
 * The replication sub-protocol inside CopyData messages (PostgreSQL docs, "Streaming Replication
 * Protocol"): XLogData ('w') and primary keepalive ('k') from the server, standby status update
 * ('r') from us. Timestamps are microseconds since 2000-01-01.
 */
const PG_EPOCH_OFFSET_US = 946_684_800_000_000n;

export interface XLogDataHeader {
  kind: 'xlogdata';
  walStart: Lsn;
  walEnd: Lsn;
  payload: Buffer;
}

export interface Keepalive {
  kind: 'keepalive';
  /** The server's current end of WAL as it has sent it. */
  walEnd: Lsn;
  replyRequested: boolean;
}

export function parseCopyData(chunk: Buffer): XLogDataHeader | Keepalive | null {
  const tag = chunk[0];
  if (tag === 0x77 /* w */ && chunk.length >= 25) {
    return {
      kind: 'xlogdata',
      walStart: lsnFromBigInt(chunk.readBigUInt64BE(1)),
      walEnd: lsnFromBigInt(chunk.readBigUInt64BE(9)),
      payload: chunk.subarray(25),
    };
  }
  if (tag === 0x6b /* k */ && chunk.length >= 18) {
    return {
      kind: 'keepalive',
      walEnd: lsnFromBigInt(chunk.readBigUInt64BE(1)),
      replyRequested: chunk[17] === 1,
    };
  }
  return null;
}

/**
 * Standby status update. `flushed` becomes the slot's confirmed_flush_lsn: Postgres may recycle
 * WAL before it and will not resend transactions that committed before it. It must therefore be
 * the end of the last transaction whose keys Redis has applied, never just what was received.
 */
export function standbyStatusUpdate(written: Lsn, flushed: Lsn, nowMs: number, replyRequested = false): Buffer {
  const buf = Buffer.alloc(34);
  buf[0] = 0x72; // 'r'
  buf.writeBigUInt64BE(written, 1);
  buf.writeBigUInt64BE(flushed, 9);
  buf.writeBigUInt64BE(flushed, 17);
  buf.writeBigUInt64BE(BigInt(Math.floor(nowMs)) * 1000n - PG_EPOCH_OFFSET_US, 25);
  buf[33] = replyRequested ? 1 : 0;
  return buf;
}

/**
 * A protocol timestamp (int64 µs since 2000-01-01) at `offset`, in whole ms since the Unix epoch,
 * without BigInts: µs since 1970 stay below 2^53 until the year 2255.
 */
export function pgTimeToMs(buf: Buffer, offset: number): number {
  const us = buf.readInt32BE(offset) * 2 ** 32 + buf.readUInt32BE(offset + 4) + Number(PG_EPOCH_OFFSET_US);
  return Math.floor(us / 1000);
}
