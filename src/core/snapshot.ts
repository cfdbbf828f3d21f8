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
const HALF = EPOCH / 2n;

/**
 * Whether the transaction with 32-bit id `xid` (what pgoutput's BEGIN carries) is visible to the
 * snapshot. Its full id is the one with this low half that lies within 2^31 of xmax (ids that
 * far apart cannot both be live). It can be at or past xmax: xmax is one past the latest
 * transaction that *completed*, and a commit that is flushed but still waiting (for a synchronous
 * standby) has not completed; such an id is in the future for this snapshot, so invisible.
 */
export function isVisible(snapshot: Snapshot, xid: number): boolean {
  let full = (snapshot.xmax & ~(EPOCH - 1n)) | BigInt(xid >>> 0);
  if (full > snapshot.xmax + HALF) full -= EPOCH;
  else if (full < snapshot.xmax - HALF) full += EPOCH;
  if (full < snapshot.xmin) return true;
  return full < snapshot.xmax && !snapshot.inProgress.has(full);
}
