import { describe, expect, it } from 'vitest';
import { commandOf, DEFAULT_CONFIG, parseCliArgs, usageOf } from '../../src/cli-args.js';

describe('the command line', () => {
  it('takes options before or after the command', () => {
    expect(parseCliArgs(['validate', '--config', 'a.yaml'])).toMatchObject({ command: 'validate', config: 'a.yaml', help: false });
    expect(parseCliArgs(['--config', 'a.yaml', 'validate'])).toMatchObject({ command: 'validate', config: 'a.yaml' });
    expect(parseCliArgs(['-c', 'a.yaml', 'run'])).toMatchObject({ command: 'run', config: 'a.yaml' });
    expect(parseCliArgs(['check'])).toMatchObject({ command: 'check', config: DEFAULT_CONFIG });
    expect(parseCliArgs(['teardown', '--yes'])).toMatchObject({ command: 'teardown', yes: true });
    expect(parseCliArgs(['explain', '--table', 'users', '--op', 'insert', '--after', '{"id":1}'])).toMatchObject({
      command: 'explain',
      table: 'users',
      op: 'insert',
      after: '{"id":1}',
    });
    expect(parseCliArgs(['explain', '--rule', 'mappings/users.yaml#rules[0]'])).toMatchObject({ command: 'explain', rule: 'mappings/users.yaml#rules[0]' });
    expect(usageOf('explain')).toContain('--rule FILE[#rules[N]]|all');
  });

  it('gives help for any command, and the version', () => {
    expect(parseCliArgs(['run', '--help'])).toMatchObject({ command: 'run', help: true });
    expect(parseCliArgs(['-h'])).toMatchObject({ command: null, help: true });
    expect(parseCliArgs(['help'])).toMatchObject({ command: null, help: true });
    expect(parseCliArgs(['--version'])).toMatchObject({ version: true });
    expect(parseCliArgs(['-V'])).toMatchObject({ version: true });
    expect(usageOf('run')).toMatch(/^usage: cdc-invalidator run \[--config FILE\]/);
    expect(usageOf('teardown')).toContain('--yes');
    for (const text of [usageOf(null), usageOf('check')]) {
      expect(text).toContain('LOG_LEVEL');
      expect(text).toContain('LOG_FORMAT');
      expect(text).toContain('DATABASE_URL');
      expect(text).toMatch(/exit codes:\n {2}0 .*\n {2}1 .*\n {2}2 /);
    }
    expect(usageOf(null)).toContain('-c, --config FILE');
  });

  it.each([
    [['frobnicate'], 'unknown command "frobnicate" (commands: run, validate, check, explain, teardown)'],
    [['validate', 'extra'], 'unexpected argument "extra" after the command "validate" (options start with --)'],
    [['run', '--confg', 'x'], 'unknown option --confg'],
    [['run', '--config'], '--config needs a value'],
    [['run', '--table', 'users'], '--table is not an option of "run" (it belongs to explain)'],
    [['check', '--yes'], '--yes is not an option of "check" (it belongs to teardown)'],
    [['validate', '--rule', 'all'], '--rule is not an option of "validate" (it belongs to explain)'],
  ])('refuses %j with a message for the user', (argv, message) => {
    expect(() => parseCliArgs(argv)).toThrow(message);
  });

  it('finds the command without parsing strictly, for the re-execution with node flags', () => {
    expect(commandOf(['run'])).toBe('run');
    expect(commandOf(['--config', 'run.yaml', 'run'])).toBe('run');
    expect(commandOf(['-c', 'x', 'validate'])).toBe('validate');
    expect(commandOf(['--help'])).toBeUndefined();
  });
});
