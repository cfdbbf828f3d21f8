import { describe, expect, it } from 'vitest';
import { OffsetCommits, type PartitionPosition } from '../../src/sources/debezium/offset-commits.js';

const at = (partition: number, next: number): PartitionPosition => ({ topic: 't', partition, next: String(next) });

/** A commit function whose requests the test answers one by one. */
function broker() {
  const requests: { positions: PartitionPosition[]; answer: (ok: boolean) => void }[] = [];
  const send = (positions: PartitionPosition[]) =>
    new Promise<void>((resolve, reject) => requests.push({ positions, answer: (ok) => (ok ? resolve() : reject(new Error('refused'))) }));
  return { requests, send };
}

const settle = () => new Promise<void>((resolve) => setImmediate(resolve));

describe('OffsetCommits', () => {
  it('sends at once, then everything acknowledged meanwhile in one request, the latest position per partition', async () => {
    const b = broker();
    const commits = new OffsetCommits(b.send);
    commits.add(at(0, 10));
    expect(b.requests.map((r) => r.positions)).toEqual([[at(0, 10)]]);
    commits.add(at(0, 20));
    commits.add(at(1, 5));
    commits.add(at(0, 30));
    expect(b.requests).toHaveLength(1);
    b.requests[0]!.answer(true);
    await settle();
    expect(b.requests.map((r) => r.positions)).toEqual([[at(0, 10)], [at(0, 30), at(1, 5)]]);
    b.requests[1]!.answer(true);
    await settle();
    expect(b.requests).toHaveLength(2);
    expect(commits.size).toBe(0);
  });

  it('keeps what failed for the next request, unless a later position came', async () => {
    const b = broker();
    const commits = new OffsetCommits(b.send);
    commits.add(at(0, 10));
    commits.add(at(0, 11));
    b.requests[0]!.answer(false);
    await settle();
    // 0@11 came while 0@10 was on its way: 0@10 is not kept. Nothing is sent again until something new comes.
    expect(b.requests).toHaveLength(1);
    commits.add(at(1, 4));
    expect(b.requests[1]!.positions).toEqual([at(0, 11), at(1, 4)]);
    b.requests[1]!.answer(false);
    await settle();
    commits.add(at(2, 1));
    expect(b.requests[2]!.positions).toEqual([at(0, 11), at(1, 4), at(2, 1)]);
  });

  it('flush waits for the request on its way and sends what is left', async () => {
    const b = broker();
    const commits = new OffsetCommits(b.send);
    commits.add(at(0, 10));
    commits.add(at(0, 12));
    const flushed = commits.flush(5_000);
    b.requests[0]!.answer(true);
    await settle();
    expect(b.requests[1]!.positions).toEqual([at(0, 12)]);
    b.requests[1]!.answer(true);
    expect(await flushed).toBe(true);
  });

  it('flush tries what failed once more, and says when it is still not committed', async () => {
    const b = broker();
    const commits = new OffsetCommits(b.send);
    commits.add(at(0, 10));
    b.requests[0]!.answer(false);
    await settle();
    const flushed = commits.flush(5_000);
    await settle();
    expect(b.requests[1]!.positions).toEqual([at(0, 10)]);
    b.requests[1]!.answer(false);
    expect(await flushed).toBe(false);
    expect(commits.size).toBe(1);
  });

  it('flush gives up after its timeout', async () => {
    const b = broker();
    const commits = new OffsetCommits(b.send);
    commits.add(at(0, 10));
    expect(await commits.flush(20)).toBe(false);
    expect(await new OffsetCommits(b.send).flush(20)).toBe(true);
  });
});
