import { describe, expect, it } from 'vitest';
import type { KeyOperation } from '../../src/core/change.js';
import { planBatch } from '../../src/sinks/redis/plan.js';

describe('planBatch', () => {
  it('prefixes keys and tag sets, and keeps one entry per key, tag and pattern', () => {
    const ops: KeyOperation[] = [
      { action: 'delete', key: 'user:1' },
      { action: 'delete', key: 'user:1' },
      { action: 'bump', key: 'users:version', version: 5n },
      { action: 'bump', key: 'users:version', version: 9n },
      { action: 'bump', key: 'users:version', version: 7n },
      { action: 'bump', key: 'items:version', version: null },
      { action: 'bump', key: 'items:version', version: null },
      { action: 'tag', tag: 'category:7' },
      { action: 'tag', tag: 'category:7' },
      { action: 'tag', tag: 'category:8' },
      { action: 'pattern', pattern: 'products:7:*' },
      { action: 'pattern', pattern: 'products:7:*' },
    ];
    expect(planBatch(ops, 'app:')).toEqual({
      deletes: ['app:user:1'],
      bumpTo: [['app:users:version', '9']],
      increments: ['app:items:version'],
      tags: [
        { tag: 'category:7', setKey: 'app:tag:category:7' },
        { tag: 'category:8', setKey: 'app:tag:category:8' },
      ],
      patterns: ['app:products:7:*'],
    });
  });

  it('escapes glob characters of the prefix in patterns, and only there', () => {
    const plan = planBatch([{ action: 'pattern', pattern: 'p:\\*:*' }], 'tenant[1]*:');
    expect(plan.patterns).toEqual(['tenant\\[1\\]\\*:p:\\*:*']);
  });

  it('keeps versions past 2^53 exact', () => {
    const plan = planBatch([{ action: 'bump', key: 'v', version: 2n ** 64n + 1n }], '');
    expect(plan.bumpTo).toEqual([['v', '18446744073709551617']]);
  });

  it('plans nothing for no operations', () => {
    expect(planBatch([], 'p:')).toEqual({ deletes: [], bumpTo: [], increments: [], tags: [], patterns: [] });
  });
});
