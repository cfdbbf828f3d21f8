// Scenario 10: bad input. A corpus of broken config and mapping files, each run through the built
// binary with `validate` and with `run`. Every case must exit 2 and print a message naming the file,
// the line and column and the path inside the document; never a stack trace, and never a password
// from source.url or redis.url (every config here carries passwords, in the file and in the
// environment).
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { runBinary } from './run-binary.js';
import { recordResult } from './reliability.js';

const PG_SECRET = 'PgPassw0rdS3cretFile';
const REDIS_SECRET = 'RedisPassw0rdS3cretFile';
const ENV_SECRET = 'EnvPassw0rdS3cretVar';
const SECRETS = [PG_SECRET, REDIS_SECRET, ENV_SECRET];

const C = 'cdc-invalidator.yaml';
const M = 'mappings/users.yaml';

// Lines: 1 source, 2 kind, 3 url, 4 redis, 5 url, 6 mappings, 7 http, 8 port; extra text starts at line 9.
const BASE_CONFIG = [
  'source:',
  '  kind: postgres',
  `  url: postgres://cdc_app:${PG_SECRET}@127.0.0.1:1/app`,
  'redis:',
  `  url: redis://cdc:${REDIS_SECRET}@127.0.0.1:1/0`,
  'mappings: mappings',
  'http:',
  '  port: 0',
  '',
].join('\n');
const BASE_MAPPING = 'rules:\n  - table: users\n    invalidate: ["user:{id}"]\n';
const config = (extra: string) => BASE_CONFIG + extra;
const rule = (extra: string) => `rules:\n  - table: users\n${extra}`;
const LOOKUP = '    lookup:\n      author:\n        sql: "SELECT name FROM public.users WHERE id = $1"\n        params: [user_id]\n';

/** file (relative to the case's folder), line, column, path inside the document ('' for the whole file), message fragment. */
type Expected = [file: string, line: number, column: number, docPath: string, fragment: string];
/** Where the exact position is not the point (a YAML alias problem): any line and column of the file. */
const ANYWHERE = -1;

interface Case {
  name: string;
  /** Files written over the base pair; null removes one. */
  files: Record<string, string | null>;
  env?: Record<string, string>;
  /** Every error the binary must print, in order. */
  errors: Expected[];
}

const cases: Case[] = [
  // The config file as YAML.
  { name: 'config: YAML syntax error (unclosed flow list)', files: { [C]: config('batch: [maxChanges, 5\n') }, errors: [[C, 10, 1, '', 'YAML syntax error']] },
  {
    name: 'config: unclosed quote around a url with a password',
    files: { [C]: `source:\n  kind: postgres\n  url: "postgres://cdc_app:${PG_SECRET}@127.0.0.1:1/app\nmappings: mappings\n` },
    errors: [[C, 5, 1, '', 'YAML syntax error: Missing closing double quote']],
  },
  { name: 'config: tab indentation', files: { [C]: config('batch:\n\tmaxChanges: 5\n') }, errors: [[C, 10, 1, '', 'Tabs are not allowed']] },
  { name: 'config: bad indentation', files: { [C]: `source:\n  kind: postgres\n   url: postgres://u:${PG_SECRET}@h/db\nmappings: m\n` }, errors: [[C, 2, 9, '', 'YAML syntax error']] },
  {
    name: 'config: duplicate key (two urls, both with passwords)',
    files: { [C]: config(`redis:\n  url: redis://:${REDIS_SECRET}@127.0.0.1:2\n`) },
    errors: [[C, 9, 1, 'redis', 'duplicate key "redis" (first given on line 4)']],
  },
  { name: 'config: two YAML documents', files: { [C]: config('---\nlog: {}\n') }, errors: [[C, 9, 1, '', 'holds 2 YAML documents']] },
  { name: 'config: empty file', files: { [C]: '' }, errors: [[C, 1, 1, '', 'config file is empty']] },
  { name: 'config: only comments', files: { [C]: '# to be written\n# later\n' }, errors: [[C, 1, 1, '', 'config file is empty']] },
  { name: 'config: a list, not a map', files: { [C]: `- source: {kind: postgres, url: "postgres://u:${PG_SECRET}@h/db"}\n- mappings: m\n` }, errors: [[C, 1, 1, '', 'expected a map, got a list']] },
  { name: 'config: a plain string', files: { [C]: `postgres://cdc_app:${PG_SECRET}@127.0.0.1/app\n` }, errors: [[C, 1, 1, '', 'expected a map, got']] },
  { name: 'config: alias to an undefined anchor', files: { [C]: config('batch: *defaults\n') }, errors: [[C, ANYWHERE, ANYWHERE, '', 'alias']] },
  {
    name: 'config: alias bomb (exponential anchors)',
    files: {
      [C]: config(
        [
          'x0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]',
          ...Array.from({ length: 8 }, (_, i) => `x${i + 1}: &a${i + 1} [*a${i}, *a${i}, *a${i}, *a${i}, *a${i}, *a${i}, *a${i}, *a${i}, *a${i}]`),
          '',
        ].join('\n'),
      ),
    },
    errors: [[C, ANYWHERE, ANYWHERE, '', 'alias']],
  },
  // The config file: required keys, types, values.
  { name: 'config: missing source', files: { [C]: 'mappings: mappings\n' }, errors: [[C, 1, 1, 'source', 'missing required key "source"']] },
  { name: 'config: unknown top-level key', files: { [C]: config('redsi: {}\n') }, errors: [[C, 9, 1, 'redsi', 'unknown key "redsi" (did you mean "redis"?)']] },
  { name: 'config: unknown nested key', files: { [C]: config('batch:\n  maxWait: 5\n') }, errors: [[C, 10, 3, 'batch.maxWait', 'unknown key "maxWait" (did you mean "maxWaitMs"?)']] },
  { name: 'config: port is text', files: { [C]: config('').replace('port: 0', 'port: high') }, errors: [[C, 8, 9, 'http.port', 'expected a number, got "high"']] },
  { name: 'config: maxChanges out of range', files: { [C]: config('batch:\n  maxChanges: 0\n') }, errors: [[C, 10, 15, 'batch.maxChanges', 'must be at least 1, got 0']] },
  {
    name: 'config: source.url a list (of secrets)',
    files: { [C]: BASE_CONFIG.replace(/url: postgres:\S+/, `url: ["postgres://cdc_app:${PG_SECRET}@127.0.0.1:1/app"]`) },
    errors: [[C, 3, 8, 'source.url', 'expected a string, got a list']],
  },
  {
    name: 'config: redis.url a number-like password only',
    files: { [C]: BASE_CONFIG.replace(/url: redis:\S+/, 'url: 123456789') },
    errors: [[C, 5, 8, 'redis.url', 'expected a string, got a number']],
  },
  {
    name: 'config: source given as a url instead of a map',
    files: { [C]: `source: postgres://cdc_app:${PG_SECRET}@127.0.0.1:1/app\nmappings: mappings\n` },
    errors: [[C, 1, 9, 'source', 'expected a map, got']],
  },
  {
    name: 'config: redis given as a url instead of a map',
    files: { [C]: BASE_CONFIG.replace(/redis:\n {2}url: (\S+)/, 'redis: $1') },
    errors: [[C, 4, 8, 'redis', 'expected a map, got']],
  },
  { name: 'config: unknown source kind', files: { [C]: BASE_CONFIG.replace('kind: postgres', 'kind: mysql') }, errors: [[C, 2, 9, 'source.kind', 'unknown source kind "mysql"']] },
  { name: 'config: bad slot name', files: { [C]: BASE_CONFIG.replace('redis:', '  slot: My-Slot\nredis:') }, errors: [[C, 4, 9, 'source.slot', 'a replication slot name must be 1 to 63 characters']] },
  { name: 'config: bad log level', files: { [C]: config('log:\n  level: verbose\n') }, errors: [[C, 10, 10, 'log.level', 'got "verbose"']] },
  // The config file: environment references.
  {
    name: 'config: unset environment variable',
    files: { [C]: BASE_CONFIG.replace(/url: postgres:\S+/, 'url: ${CDC_TEST_UNSET_DATABASE_URL}') },
    errors: [[C, 3, 8, 'source.url', 'environment variable CDC_TEST_UNSET_DATABASE_URL is not set']],
  },
  {
    name: 'config: malformed reference next to a secret from the environment',
    files: { [C]: BASE_CONFIG.replace(/url: postgres:\S+/, 'url: ${DATABASE_URL}').replace(/url: redis:\S+/, 'url: ${REDIS URL}') },
    env: { DATABASE_URL: `postgres://cdc_app:${ENV_SECRET}@127.0.0.1:1/app` },
    errors: [[C, 5, 8, 'redis.url', '"${REDIS URL}" is not a valid reference']],
  },
  {
    name: 'config: secret from the environment, with an invalid key beside it',
    files: { [C]: BASE_CONFIG.replace(/url: postgres:\S+/, 'url: ${DATABASE_URL}') + 'batch:\n  maxChanges: lots\n' },
    env: { DATABASE_URL: `postgres://cdc_app:${ENV_SECRET}@127.0.0.1:1/app` },
    errors: [[C, 10, 15, 'batch.maxChanges', 'expected a number, got "lots"']],
  },
  // The mappings path.
  { name: 'mappings: directory missing', files: { [C]: BASE_CONFIG.replace('mappings: mappings', 'mappings: ./no-such-dir') }, errors: [[C, 6, 11, 'mappings', '"./no-such-dir" does not exist']] },
  { name: 'mappings: directory without yaml files', files: { [M]: null, 'mappings/README.md': '# rules go here\n' }, errors: [[C, 6, 11, 'mappings', 'holds no *.yaml or *.yml mapping file']] },
  // Mapping files as YAML.
  { name: 'mapping: empty file', files: { [M]: '' }, errors: [[M, 1, 1, '', 'mapping file is empty']] },
  { name: 'mapping: YAML syntax error', files: { [M]: 'rules:\n  - table: users\n    invalidate: ["user:{id}"\n' }, errors: [[M, 4, 1, '', 'YAML syntax error']] },
  { name: 'mapping: a list, not a map', files: { [M]: '- table: users\n  invalidate: [a]\n' }, errors: [[M, 1, 1, '', 'expected a map, got a list']] },
  { name: 'mapping: alias to an undefined anchor', files: { [M]: rule('    invalidate: *keys\n') }, errors: [[M, ANYWHERE, ANYWHERE, '', 'alias']] },
  { name: 'mapping: binary garbage', files: { [M]: '\u0000\u0001\u0002rules:\u0000\n\u00ff\u00fe' }, errors: [[M, 1, 1, '', '']] },
  // Mapping files: keys, types, operations.
  { name: 'mapping: unknown rule key', files: { [M]: rule('    invalidat: ["user:{id}"]\n') }, errors: [[M, 3, 5, 'rules[0].invalidat', 'unknown key "invalidat" (did you mean "invalidate"?)']] },
  { name: 'mapping: unknown operation', files: { [M]: rule('    on: [insert, upsert]\n    invalidate: [a]\n') }, errors: [[M, 3, 18, 'rules[0].on[1]', 'got "upsert"']] },
  { name: 'mapping: invalidate is a string', files: { [M]: rule('    invalidate: "user:{id}"\n') }, errors: [[M, 3, 17, 'rules[0].invalidate', 'expected a list, got "user:{id}"']] },
  { name: 'mapping: template is a number', files: { [M]: rule('    invalidate: [42]\n') }, errors: [[M, 3, 18, 'rules[0].invalidate[0]', 'expected a string, got 42']] },
  { name: 'mapping: rule without action', files: { [M]: rule('    on: [delete]\n') }, errors: [[M, 2, 5, 'rules[0]', 'rule has no action']] },
  { name: 'mapping: table with three parts', files: { [M]: 'rules:\n  - table: app.public.users\n    bump: [v]\n' }, errors: [[M, 2, 12, 'rules[0].table', 'table must be "table" or "schema.table"']] },
  // Mapping files: templates.
  { name: 'template: unclosed brace', files: { [M]: rule('    invalidate: ["user:{id"]\n') }, errors: [[M, 3, 18, 'rules[0].invalidate[0]', 'unclosed "{"']] },
  { name: 'template: unmatched closing brace', files: { [M]: rule('    invalidate:\n      - user:id}\n') }, errors: [[M, 4, 9, 'rules[0].invalidate[0]', 'unmatched "}"']] },
  { name: 'template: nested braces', files: { [M]: rule('    invalidate: ["user:{{id}"]\n') }, errors: [[M, 3, 18, 'rules[0].invalidate[0]', 'unmatched "}"']] },
  { name: 'template: empty placeholder', files: { [M]: rule('    bump: ["users:{}"]\n') }, errors: [[M, 3, 12, 'rules[0].bump[0]', 'empty placeholder "{}"']] },
  { name: 'template: spaces around a column', files: { [M]: rule('    invalidate: ["user:{ id }"]\n') }, errors: [[M, 3, 18, 'rules[0].invalidate[0]', 'has spaces around the column name']] },
  { name: 'template: fallback key with a column', files: { [M]: rule('    invalidate: [a]\n    fallback:\n      bump: ["users:{id}"]\n') }, errors: [[M, 5, 14, 'rules[0].fallback.bump[0]', 'fallback keys are fixed names']] },
  // Mapping files: lookups.
  {
    name: 'lookup: duplicate alias (duplicate YAML key)',
    files: { [M]: rule(`${LOOKUP}      author:\n        sql: "SELECT email FROM public.users WHERE id = $1"\n        params: [user_id]\n    invalidate: ["k:{author.name}"]\n`) },
    errors: [[M, 7, 7, 'rules[0].lookup.author', 'duplicate key "author" (first given on line 4)']],
  },
  {
    name: 'lookup: params do not match placeholders',
    files: { [M]: rule('    lookup:\n      author:\n        sql: "SELECT name FROM users WHERE id = $1 AND org = $2"\n        params: [user_id]\n    invalidate: ["k:{author.name}"]\n') },
    errors: [[M, 6, 17, 'rules[0].lookup.author.params', 'placeholders up to $2 but params lists 1 column']],
  },
  { name: 'lookup: undeclared alias in a template', files: { [M]: rule(`${LOOKUP}    invalidate: ["k:{autor.name}"]\n`) }, errors: [[M, 7, 18, 'rules[0].invalidate[0]', 'names no lookup "autor" (declared: author)']] },
  { name: 'lookup: template names a lookup the rule lacks', files: { [M]: rule('    invalidate: ["k:{author.name}"]\n') }, errors: [[M, 3, 18, 'rules[0].invalidate[0]', 'the rule declares no lookup']] },
  { name: 'lookup: bad alias', files: { [M]: rule('    lookup:\n      "the author":\n        sql: "SELECT 1"\n    invalidate: [a]\n') }, errors: [[M, 4, 7, 'rules[0].lookup["the author"]', 'a lookup name is a letter or _']] },
  { name: 'lookup: unknown key', files: { [M]: rule(`${LOOKUP.replace('params', 'parms')}    invalidate: ["k:{author.name}"]\n`) }, errors: [[M, 6, 9, 'rules[0].lookup.author.parms', 'unknown key "parms" (did you mean "params"?)']] },
  // A directory with one bad file among good ones, in a nested folder, next to a hidden copy.
  {
    name: 'directory: one bad file among good ones',
    files: {
      'mappings/a-comments.yaml': 'rules:\n  - table: comments\n    invalidate: ["comment:{id}"]\n',
      'mappings/nested/b-orders.yml': 'rules:\n  - table: public.orders\n    invalidate: ["order:{id}"]\n    bump: ["orders:{customer_id"]\n',
      'mappings/z-products.yaml': 'rules:\n  - table: products\n    tags: ["category:{category_id}"]\n',
      'mappings/..data/b-orders.yml': 'this is: [not, valid\n',
    },
    errors: [['mappings/nested/b-orders.yml', 4, 12, 'rules[0].bump[0]', 'unclosed "{"']],
  },
  {
    name: 'directory: problems in two files and the config, all reported',
    files: {
      [C]: config('batch:\n  maxChanges: -5\n'),
      'mappings/a.yaml': 'rules:\n  - table: a\n    on: [insert, replace]\n    bump: [v]\n',
      'mappings/b.yaml': 'rules:\n  - table: b\n    invalidate: ["b:{id"]\n',
    },
    errors: [
      [C, 10, 15, 'batch.maxChanges', 'must be at least 1, got -5'],
      ['mappings/a.yaml', 3, 18, 'rules[0].on[1]', 'got "replace"'],
      ['mappings/b.yaml', 3, 18, 'rules[0].invalidate[0]', 'unclosed "{"'],
    ],
  },
];

let root: string;
beforeAll(() => {
  root = mkdtempSync(path.join(tmpdir(), 'cdc-bad-input-'));
});
afterAll(() => {
  rmSync(root, { recursive: true, force: true });
});

function writeCase(index: number, c: Case): string {
  const dir = path.join(root, String(index));
  const all: Record<string, string | null> = { [C]: BASE_CONFIG, [M]: BASE_MAPPING, ...c.files };
  for (const [name, text] of Object.entries(all)) {
    if (text === null) continue;
    mkdirSync(path.dirname(path.join(dir, name)), { recursive: true });
    writeFileSync(path.join(dir, name), text);
  }
  return dir;
}

/** The line the binary prints for one problem: `file:line:col: path: message` (no path for the whole file). */
function linePattern(dir: string, [file, line, column, docPath]: Expected): RegExp {
  const where = line === ANYWHERE ? String.raw`\d+:\d+` : `${line}:${column}`;
  return new RegExp(`^${escapeRegExp(path.join(dir, file))}:${where}:${escapeRegExp(docPath === '' ? '' : ` ${docPath}:`)} `);
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

const results = new Map<string, 'ok'>();

describe('broken config and mapping files, through the built binary', () => {
  test('the corpus is large enough to mean something', () => {
    expect(cases.length).toBeGreaterThanOrEqual(30);
    expect(new Set(cases.map((c) => c.name)).size).toBe(cases.length);
  });

  test.concurrent.for(cases.map((c, index) => ({ ...c, index })))('$name', async (c, { expect }) => {
    const dir = writeCase(c.index, c);
    const env = { LOG_LEVEL: 'trace', ...c.env };
    for (const command of ['validate', 'run']) {
      const { code, output } = await runBinary([command, '--config', path.join(dir, C)], env);
      const context = `${command} on "${c.name}":\n${output}`;
      expect(code, context).toBe(2);
      // Every problem is where it is expected, in order, with its message.
      const errorLines = output.split('\n').filter((l) => l.startsWith(dir) && !/^\S+:\d+:\d+:( \S+:)? warning: /.test(l));
      expect(errorLines, context).toHaveLength(c.errors.length);
      c.errors.forEach((expected, i) => {
        expect(errorLines[i], context).toMatch(linePattern(dir, expected));
        expect(errorLines[i], context).toContain(expected[4]);
      });
      expect(output, context).toMatch(new RegExp(`\\n${c.errors.length} problems? found\\n$`));
      // No stack trace, no secret.
      expect(output, context).not.toMatch(/\n\s+at /);
      for (const secret of SECRETS) expect(output, context).not.toContain(secret);
    }
    results.set(c.name, 'ok');
  });
});

afterAll(() => {
  recordResult({
    id: '10',
    title: 'Bad input',
    runs: cases.length * 2,
    changes: cases.length,
    lost: cases.length - results.size,
    duplicated: null,
    recoverySeconds: null,
    notes:
      `${results.size} of ${cases.length} broken config/mapping cases exit 2 from both \`validate\` and \`run\` of the built binary, ` +
      'each naming file:line:col and the path, in order; no stack trace, no password from source.url / redis.url / the environment (LOG_LEVEL=trace)' +
      (results.size === cases.length ? '' : `. Failing: ${cases.filter((c) => !results.has(c.name)).map((c) => c.name).join('; ')}`),
  });
});
