import { describe, expect, it } from 'vitest';
import type { Change } from '../../src/core/change.js';
import { TransactionIds } from '../../src/sources/postgres/visibility.js';
import { isVisible, parseSnapshot } from '../../src/core/snapshot.js';

describe('parseSnapshot', () => {
  it.each([
    ['750:750:', { xmin: 750n, xmax: 750n, inProgress: [] }],
    ['748:752:748,750', { xmin: 748n, xmax: 752n, inProgress: [748n, 750n] }],
    ['4294967296000:4294967296010:4294967296003', { xmin: 4294967296000n, xmax: 4294967296010n, inProgress: [4294967296003n] }],
  ])('%s', (text, want) => {
    const s = parseSnapshot(text);
    expect({ xmin: s.xmin, xmax: s.xmax, inProgress: [...s.inProgress] }).toEqual(want);
  });

  it.each(['', '1:2', 'a:b:', '1:2:3,', '1:2:,3', '-1:2:'])('refuses %j', (text) => {
    expect(() => parseSnapshot(text)).toThrow(/not a snapshot/);
  });
});

describe('isVisible', () => {
  const epoch = 1n << 32n;
  it.each([
    // [snapshot, xid, visible]
    ['750:750:', 749, true],
    // At or past xmax: not completed when the snapshot was taken (a commit waiting for its standby).
    ['750:750:', 750, false],
    ['750:750:', 760, false],
    ['748:752:748,750', 748, false],
    ['748:752:748,750', 749, true],
    ['748:752:748,750', 750, false],
    ['748:752:748,750', 751, true],
    ['748:752:748,750', 100, true],
    // In the next epoch, a 32-bit xid above xmax's low half belongs to the epoch before.
    [`${epoch + 5n}:${epoch + 10n}:${epoch + 7n}`, 7, false],
    [`${epoch + 5n}:${epoch + 10n}:${epoch + 7n}`, 8, true],
    [`${epoch - 3n}:${epoch + 10n}:${epoch - 2n}`, 0xfffffffe, false],
    [`${epoch - 3n}:${epoch + 10n}:${epoch - 2n}`, 0xffffffff, true],
    [`${epoch - 3n}:${epoch + 10n}:${epoch - 2n}`, 0xfffffff0, true],
    // xmax just before an epoch ends: a small xid is in the next epoch, past xmax.
    [`${epoch - 5n}:${epoch - 2n}:`, 1, false],
    [`${epoch - 5n}:${epoch - 2n}:`, 0xfffffffc, true],
  ] as const)('%s, xid %d: %s', (text, xid, visible) => {
    expect(isVisible(parseSnapshot(text), xid)).toBe(visible);
  });
});

describe('TransactionIds', () => {
  const change = (position: string) => ({ position }) as Change;
  it('gives each taken transaction once, forgets it once taken, and forgets transactions without changes', () => {
    const ids = new TransactionIds();
    ids.begin(10, '0/A');
    ids.change();
    ids.commit();
    ids.begin(11, '0/B'); // no change of a published table
    ids.commit();
    ids.begin(12, '0/C');
    ids.change();
    expect(ids.size).toBe(2);
    expect(ids.take([change('0/A'), change('0/A'), change('0/C')])).toEqual([10, 12]);
    // The batch ended inside 0/C, which was checked with it: the rest of its changes need no check.
    expect(ids.size).toBe(0);
    ids.commit();
    expect(ids.take([change('0/C')])).toEqual([]);
    ids.begin(13, '0/D');
    ids.change();
    ids.clear();
    expect(ids.size).toBe(0);
  });

  it('holds nothing after many batches: one id per transaction, each gone once taken', () => {
    const ids = new TransactionIds();
    for (let i = 0; i < 10_000; i++) {
      const position = `0/${i.toString(16)}`;
      ids.begin(i, position);
      ids.change();
      ids.commit();
      expect(ids.take([change(position)])).toEqual([i]);
    }
    expect(ids.size).toBe(0);
  });
});

describe('TransactionIds across batches', () => {
  const change = (position: string) => ({ position }) as Change;
  it('checks each transaction once when batches split transactions anywhere', () => {
    const ids = new TransactionIds();
    const stream: string[] = [];
    // 300 transactions of 1 to 5 changes, every third one without a published change.
    for (let t = 0; t < 300; t++) {
      const position = `0/${(t + 1).toString(16)}`;
      ids.begin(t, position);
      if (t % 3 !== 2) {
        for (let c = 0; c < (t % 5) + 1; c++) {
          ids.change();
          stream.push(position);
        }
      }
      ids.commit();
    }
    const seen: number[] = [];
    for (let i = 0; i < stream.length; i += 7) seen.push(...ids.take(stream.slice(i, i + 7).map(change)));
    expect(seen).toEqual(Array.from({ length: 300 }, (_, t) => t).filter((t) => t % 3 !== 2));
    expect(ids.size).toBe(0);
  });
});
