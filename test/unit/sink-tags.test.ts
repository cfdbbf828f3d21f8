import { describe, expect, it } from 'vitest';
import { TAG_STEP_SCRIPT, type ScriptCache } from '../../src/sinks/redis/scripts.js';
import { invalidateTag } from '../../src/sinks/redis/tags.js';

/** Stands in for Redis: a set of `size` members, popped `count` at a time by the step script. */
function fakeScripts(size: number) {
  const calls: Array<{ keys: readonly string[]; args: readonly (string | number)[] }> = [];
  let left = size;
  const scripts = {
    async run(script: string, keys: readonly string[], args: readonly (string | number)[]) {
      expect(script).toBe(TAG_STEP_SCRIPT);
      calls.push({ keys, args });
      const popped = Math.min(left, Number(args[0]));
      left -= popped;
      return popped;
    },
  } as unknown as ScriptCache;
  return { scripts, calls, left: () => left };
}

describe('invalidateTag', () => {
  it.each([
    [0, 100, 1],
    [99, 100, 1],
    [100, 100, 2],
    [250, 100, 3],
    [100_000, 1000, 101],
  ])('a set of %i members in steps of %i takes %i calls', async (size, step, calls) => {
    const fake = fakeScripts(size);
    expect(await invalidateTag(fake.scripts, 'p:tag:t', step, 'unlink')).toBe(calls);
    expect(fake.calls).toHaveLength(calls);
    expect(fake.left()).toBe(0);
    expect(fake.calls[0]).toEqual({ keys: ['p:tag:t'], args: [step, 'unlink', ''] });
  });
});
