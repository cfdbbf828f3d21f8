import { describe, expect, it } from 'vitest';
import { globMatch } from '../../src/client/glob.js';
import { L1Cache } from '../../src/client/l1.js';
import { escapeGlob } from '../../src/core/glob.js';

describe('globMatch (Redis glob rules)', () => {
  it.each([
    ['app:products:7:*', 'app:products:7:page:1', true],
    ['app:products:7:*', 'app:products:71:page:1', false],
    ['a?c', 'abc', true],
    ['a?c', 'ac', false],
    ['a[bc]d', 'acd', true],
    ['a[^bc]d', 'acd', false],
    ['a[^bc]d', 'axd', true],
    ['a[a-c]d', 'abd', true],
    ['a[c-a]d', 'abd', true],
    ['a[a-c]d', 'azd', false],
    ['*', '', true],
    ['a**b', 'axxb', true],
    ['a\\*b', 'a*b', true],
    ['a\\*b', 'axb', false],
    ['a[\\]]b', 'a]b', true],
  ])('%s ~ %s = %s', (pattern, text, expected) => {
    expect(globMatch(pattern, text)).toBe(expected);
  });

  it('an escaped value only matches itself, as the worker renders patterns', () => {
    const pattern = `${escapeGlob('p*:')}listing:${escapeGlob('a*[x]?\\')}:*`;
    expect(globMatch(pattern, 'p*:listing:a*[x]?\\:1')).toBe(true);
    expect(globMatch(pattern, 'p*:listing:ab[x]?\\:1')).toBe(false);
    expect(globMatch(pattern, 'pq:listing:a*[x]?\\:1')).toBe(false);
  });
});

describe('L1Cache', () => {
  it('expires entries after their TTL', () => {
    let now = 1000;
    const l1 = new L1Cache(10, 100, () => now);
    l1.set('k', 1, [], l1.epoch);
    expect(l1.get('k')).toEqual({ found: true, value: 1 });
    now += 100;
    expect(l1.get('k').found).toBe(false);
    expect(l1.size).toBe(0);
  });

  it('keeps at most maxEntries, dropping the least recently used', () => {
    const l1 = new L1Cache(2, 1000);
    l1.set('a', 1, [], l1.epoch);
    l1.set('b', 2, [], l1.epoch);
    l1.get('a');
    l1.set('c', 3, [], l1.epoch);
    expect(l1.get('b').found).toBe(false);
    expect(l1.get('a').found).toBe(true);
    expect(l1.get('c').found).toBe(true);
  });

  it('drops entries by key, by tag and by pattern', () => {
    const l1 = new L1Cache(100, 10_000);
    l1.set('p:user:1', 1, [], l1.epoch);
    l1.set('p:user:2', 2, [], l1.epoch);
    l1.set('p:page:1', 3, ['category:7'], l1.epoch);
    l1.set('p:page:2', 4, ['category:7', 'category:8'], l1.epoch);
    l1.set('p:list:7:1', 5, [], l1.epoch);
    l1.set('p:list:8:1', 6, [], l1.epoch);
    l1.invalidate(['p:user:1'], ['category:7'], ['p:list:7:*']);
    expect(['p:user:1', 'p:user:2', 'p:page:1', 'p:page:2', 'p:list:7:1', 'p:list:8:1'].map((k) => l1.get(k).found)).toEqual([
      false,
      true,
      false,
      false,
      false,
      true,
    ]);
    // The tag index forgets dropped entries.
    l1.set('p:page:3', 7, ['category:8'], l1.epoch);
    l1.invalidate([], ['category:8'], []);
    expect(l1.get('p:page:3').found).toBe(false);
  });

  it('refuses a value read before an invalidation arrived', () => {
    const l1 = new L1Cache(100, 10_000);
    const epoch = l1.epoch;
    l1.invalidate(['other'], [], []);
    expect(l1.set('k', 'old', [], epoch)).toBe(false);
    expect(l1.get('k').found).toBe(false);
    expect(l1.set('k', 'new', [], l1.epoch)).toBe(true);
  });

  it('stores a cached "not found" as a found undefined', () => {
    const l1 = new L1Cache(100, 10_000);
    l1.set('k', undefined, [], l1.epoch);
    expect(l1.get('k')).toEqual({ found: true, value: undefined });
  });
});
