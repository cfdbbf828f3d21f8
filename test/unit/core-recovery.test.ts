import { describe, expect, it } from 'vitest';
import { lostChangesOperations } from '../../src/core/recovery.js';
import { compileRules } from '../../src/core/rules.js';

describe('lostChangesOperations', () => {
  it("is every rule's fallback, whatever its operations, and names the rules without one", () => {
    const { rules } = compileRules([
      {
        file: 'm.yaml',
        rules: [
          { table: 'users', on: ['insert'], invalidate: ['user:{id}'], fallback: { invalidate: ['users:all'], bump: ['users:version'] } },
          { table: 'comments', invalidate: ['comment:{id}'], fallback: { tags: ['comments'] } },
          { table: 'orders', invalidate: ['order:{id}'] },
        ],
      },
    ]);
    expect(lostChangesOperations(rules, 42n)).toEqual({
      operations: [
        { action: 'delete', key: 'users:all' },
        { action: 'bump', key: 'users:version', version: 42n },
        { action: 'tag', tag: 'comments' },
      ],
      rulesWithoutFallback: ['m.yaml#rules[2]'],
    });
  });
});
