/**
 * PostgreSQL snapshots, as `pg_current_snapshot()::text` prints them: `xmin:xmax:xip,xip,...`, full
 * 64-bit transaction ids (epoch and xid). A transaction is visible to a snapshot when it is older
 * than xmin, or older than xmax and not among the in-progress ids.
 */
export interface Snapshot {
  xmin: bigint;
  xmax: bigint;
  inProgress: ReadonlySet<bigint>;
}

const SNAPSHOT_TEXT = /^(\d+):(\d+):((?:\d+(?:,\d+)*)?)$/;

export function parseSnapshot(text: string): Snapshot {
  const m = SNAPSHOT_TEXT.exec(text);
  if (m === null) throw new TypeError(`not a snapshot: ${JSON.stringify(text)}`);
  const inProgress = new Set(m[3] === '' ? [] : m[3]!.split(',').map((x) => BigInt(x)));
  return { xmin: BigInt(m[1]!), xmax: BigInt(m[2]!), inProgress };
}

const EPOCH = 1n << 32n;

/**
 * Whether the transaction with 32-bit id `xid` (what pgoutput's BEGIN carries) is visible to the
 * snapshot. It committed (logical decoding sends nothing else) after being assigned, so its full
 * id is the one with this xid that is below xmax and closest to it: xmax's epoch, or the one before.
 */
export function isVisible(snapshot: Snapshot, xid: number): boolean {
  let full = (snapshot.xmax & ~(EPOCH - 1n)) | BigInt(xid >>> 0);
  if (full >= snapshot.xmax) full -= EPOCH;
  if (full < snapshot.xmin) return true;
  return full < snapshot.xmax && !snapshot.inProgress.has(full);
}
