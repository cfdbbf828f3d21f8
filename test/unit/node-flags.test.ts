import { describe, expect, it } from 'vitest';
import { NODE_FLAGS_ENV, nodeFlagsToAdd, RUN_NODE_FLAGS } from '../../src/node-flags.js';

describe('nodeFlagsToAdd', () => {
  it('adds the young generation setting to run, and only to run', () => {
    expect(nodeFlagsToAdd(['run', '--config', 'x.yaml'], [], {})).toEqual(RUN_NODE_FLAGS);
    expect(RUN_NODE_FLAGS.some((f) => f.startsWith('--max-semi-space-size='))).toBe(true);
    for (const command of ['check', 'validate', 'explain', '--help']) expect(nodeFlagsToAdd([command], [], {})).toEqual([]);
    expect(nodeFlagsToAdd([], [], {})).toEqual([]);
  });

  it('never restarts twice, and a user can keep node as started', () => {
    expect(nodeFlagsToAdd(['run'], [], { [NODE_FLAGS_ENV]: RUN_NODE_FLAGS.join(' ') })).toEqual([]);
    expect(nodeFlagsToAdd(['run'], [], { [NODE_FLAGS_ENV]: 'off' })).toEqual([]);
  });

  it("respects the user's own settings, from the command line or NODE_OPTIONS, in either spelling, flag by flag", () => {
    const others = (flag: string) => RUN_NODE_FLAGS.filter((f) => !f.startsWith(flag));
    expect(nodeFlagsToAdd(['run'], ['--max-semi-space-size=32'], {})).toEqual(others('--max-semi-space-size='));
    expect(nodeFlagsToAdd(['run'], ['--max_semi_space_size=8'], {})).toEqual(others('--max-semi-space-size='));
    expect(nodeFlagsToAdd(['run'], [], { NODE_OPTIONS: '--max-old-space-size=320  --max-semi-space-size=16' })).toEqual(others('--max-semi-space-size='));
    expect(nodeFlagsToAdd(['run'], ['--heap_growing_percent=10', '--max-semi-space-size=4'], {})).toEqual([]);
    // Other flags are kept and do not count.
    expect(nodeFlagsToAdd(['run'], ['--cpu-prof'], { NODE_OPTIONS: '--max-old-space-size=320' })).toEqual(RUN_NODE_FLAGS);
  });
});
