import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { loadConfig } from '../../src/config/load.js';
import { ConfigError } from '../../src/errors.js';

/**
 * A corpus of broken config and mapping files. Each case starts from a valid pair of files, replaces
 * or adds some, and lists every error expected: file, line, column, path, and a fragment of the message.
 */

const C = 'cdc-invalidator.yaml';
const M = 'mappings/users.yaml';
const BASE_CONFIG = 'source:\n  kind: postgres\n  url: postgres://localhost/app\nmappings: mappings\n';
const BASE_MAPPING = 'rules:\n  - table: users\n    invalidate: ["user:{id}"]\n';

const config = (extra: string) => BASE_CONFIG + extra;
const source = (extra: string) => `source:\n  kind: postgres\n  url: postgres://localhost/app\n${extra}mappings: mappings\n`;
const DEBEZIUM = 'source:\n  kind: debezium\n  brokers: [localhost:9092]\n  topics: [app.public.users]\n';
const rule = (extra: string) => `rules:\n  - table: users\n${extra}`;
/** A query rule keyed by its one parameter, `id`. */
const query = (sql: string, extra = '') => `rules:\n  - query: "${sql}"\n    params: [id]\n    invalidate: ["k:{id}"]\n${extra}`;

type Expected = [file: string, line: number, column: number, path: string, fragment: string];
interface Case {
  name: string;
  files: Record<string, string | null>;
  env?: Record<string, string>;
  errors: Expected[];
}

const cases: Case[] = [
  // config file: YAML
  { name: 'config syntax error', files: { [C]: 'source:\n  kind: postgres\n  url: [a, b\nmappings: m\n' }, errors: [[C, 4, 1, '', 'YAML syntax error']] },
  { name: 'config bad indentation', files: { [C]: 'source:\n  kind: postgres\n   url: postgres://db/x\nmappings: m\n' }, errors: [[C, 2, 9, '', 'YAML syntax error']] },
  { name: 'config unclosed quote', files: { [C]: 'source:\n  kind: postgres\n  url: "postgres://u:pw@db\n' }, errors: [[C, 4, 1, '', 'YAML syntax error: Missing closing double quote']] },
  { name: 'config tab indentation', files: { [C]: 'source:\n\tkind: postgres\n' }, errors: [[C, 2, 1, '', 'Tabs are not allowed']] },
  { name: 'config duplicate key', files: { [C]: 'source:\n  kind: postgres\n  url: postgres://a\n  url: postgres://b\nmappings: mappings\n' }, errors: [[C, 4, 3, 'source.url', 'duplicate key "url" (first given on line 3)']] },
  { name: 'source.replicaIdentity misspelt', files: { [C]: source('  replicaIdentity: ful\n') }, errors: [[C, 4, 20, 'source.replicaIdentity', 'expected one of check, full, got "ful" (did you mean "full"?)']] },
  { name: 'consistency.visibility unknown', files: { [C]: config('consistency:\n  visibility: sometimes\n') }, errors: [[C, 6, 15, 'consistency.visibility', 'expected one of auto, always, off, got "sometimes"']] },
  { name: 'consistency.replicas without url', files: { [C]: config('consistency:\n  replicas:\n    - uri: postgres://r/app\n') }, errors: [
      [C, 7, 7, 'consistency.replicas[0].url', 'missing required key "url"'],
      [C, 7, 7, 'consistency.replicas[0].uri', 'unknown key "uri" (did you mean "url"?)'],
    ] },
  { name: 'consistency.replicaTimeoutMs negative', files: { [C]: config('consistency:\n  replicaTimeoutMs: -1\n') }, errors: [[C, 6, 21, 'consistency.replicaTimeoutMs', '']] },
  { name: 'consistency.replicas with a Debezium source', files: { [C]: `${DEBEZIUM}mappings: mappings\nconsistency:\n  replicas:\n    - url: postgres://r/app\n` }, errors: [[C, 8, 5, 'consistency.replicas', 'replicas are supported with source.kind postgres only']] },
  { name: 'source.url not a connection string', files: { [C]: 'source:\n  kind: postgres\n  url: htp://db/app\nmappings: mappings\n' }, errors: [[C, 3, 8, 'source.url', 'source.url must be a postgres:// or postgresql:// URI, or libpq key=value pairs']] },
  { name: 'redis.url not a redis URL', files: { [C]: config('redis:\n  url: htp://x\n') }, errors: [[C, 6, 8, 'redis.url', 'redis.url must be a redis:// or rediss:// URL']] },
  { name: 'replica url not a connection string', files: { [C]: config('consistency:\n  replicas:\n    - url: replica-1\n') }, errors: [[C, 7, 12, 'consistency.replicas[0].url', 'a replica url must be a postgres://']] },
  { name: 'redis.url and redis.cluster both', files: { [C]: config('redis:\n  url: redis://a:6379\n  cluster: [redis://b:7000]\n') }, errors: [[C, 6, 3, 'redis', 'give one of redis.url (one server), redis.cluster (the seed nodes of a cluster) or redis.sentinel']] },
  { name: 'redis.cluster and redis.sentinel both', files: { [C]: config('redis:\n  cluster: [redis://b:7000]\n  sentinel: { name: m, nodes: [redis://s:26379] }\n') }, errors: [[C, 6, 3, 'redis', 'not several']] },
  { name: 'redis.sentinel without name', files: { [C]: config('redis:\n  sentinel:\n    nodes: [redis://s:26379]\n') }, errors: [[C, 7, 5, 'redis.sentinel.name', 'missing required key "name"']] },
  { name: 'redis.sentinel node without a scheme', files: { [C]: config('redis:\n  sentinel:\n    name: m\n    nodes: [s:26379]\n') }, errors: [[C, 8, 13, 'redis.sentinel.nodes[0]', 'each redis.sentinel node must be a redis:// or rediss:// URL']] },
  { name: 'redis.sentinel misspelt key', files: { [C]: config('redis:\n  sentinel:\n    name: m\n    nodes: [redis://s:26379]\n    pasword: x\n') }, errors: [[C, 9, 5, 'redis.sentinel.pasword', 'unknown key "pasword" (did you mean "password"?)']] },
  { name: 'redis.cluster seed without a scheme', files: { [C]: config('redis:\n  cluster: [10.0.0.1:7000, redis://b:7000]\n') }, errors: [[C, 6, 13, 'redis.cluster[0]', 'each redis.cluster seed must be a redis:// or rediss:// URL']] },
  { name: 'redis.cluster empty', files: { [C]: config('redis:\n  cluster: []\n') }, errors: [[C, 6, 12, 'redis.cluster', '']] },
  { name: 'redis.cluster a string', files: { [C]: config('redis:\n  cluster: redis://b:7000\n') }, errors: [[C, 6, 12, 'redis.cluster', 'expected a list']] },
  { name: 'redis.waitReplicas negative', files: { [C]: config('redis:\n  waitReplicas: -1\n') }, errors: [[C, 6, 17, 'redis.waitReplicas', '']] },
  { name: 'redis.waitTimeoutMs zero', files: { [C]: config('redis:\n  waitTimeoutMs: 0\n') }, errors: [[C, 6, 18, 'redis.waitTimeoutMs', '']] },
  { name: 'debezium sessionTimeoutMs too short', files: { [C]: `${DEBEZIUM}  sessionTimeoutMs: 500\nmappings: mappings\n` }, errors: [[C, 5, 21, 'source.sessionTimeoutMs', '']] },
  { name: 'redis and memcached both', files: { [C]: config('redis:\n  url: redis://a:6379\nmemcached:\n  servers: [127.0.0.1:11211]\n') }, errors: [[C, 8, 3, 'memcached', 'give redis or memcached, not both']] },
  { name: 'memcached server with a scheme', files: { [C]: config('memcached:\n  servers: [memcache://127.0.0.1:11211]\n') }, errors: [[C, 6, 13, 'memcached.servers[0]', 'each memcached server is host:port']] },
  { name: 'memcached without servers', files: { [C]: config('memcached:\n  keyPrefix: app\n') }, errors: [[C, 6, 3, 'memcached.servers', 'missing required key "servers"']] },
  { name: 'memcached invalidation misspelt', files: { [C]: config('memcached:\n  servers: [127.0.0.1:11211]\n  invalidation: stale\n') }, errors: [[C, 7, 17, 'memcached.invalidation', 'expected one of delete, mark-stale']] },
  {
    name: 'tags and patterns for a memcached target',
    files: { [C]: config('memcached:\n  servers: [127.0.0.1:11211]\n'), [M]: 'rules:\n  - table: users\n    tags: ["user:{id}"]\n  - table: posts\n    invalidate: ["post:{id}"]\n    fallback:\n      patterns: ["post:*"]\n' },
    errors: [
      [M, 3, 11, 'rules[0].tags', 'memcached has no sets and no SCAN, so tags cannot be invalidated there'],
      [M, 7, 7, 'rules[1].fallback', 'memcached has no sets and no SCAN, so patterns cannot be invalidated there'],
    ],
  },
  { name: 'config with two documents', files: { [C]: config('---\nlog: {}\n') }, errors: [[C, 5, 1, '', 'holds 2 YAML documents']] },
  { name: 'config empty', files: { [C]: '# nothing yet\n' }, errors: [[C, 1, 1, '', 'config file is empty']] },
  { name: 'config root is a list', files: { [C]: '- source\n' }, errors: [[C, 1, 1, '', 'expected a map, got a list']] },
  // config file: required keys
  { name: 'missing source', files: { [C]: 'mappings: mappings\n' }, errors: [[C, 1, 1, 'source', 'missing required key "source"']] },
  { name: 'missing mappings', files: { [C]: 'source:\n  kind: postgres\n  url: postgres://db/x\n' }, errors: [[C, 1, 1, 'mappings', 'missing required key "mappings"']] },
  { name: 'missing source.url', files: { [C]: 'source:\n  kind: postgres\nmappings: mappings\n' }, errors: [[C, 2, 3, 'source.url', 'missing required key "url"']] },
  { name: 'missing source.kind', files: { [C]: 'source:\n  url: postgres://db/x\nmappings: mappings\n' }, errors: [[C, 2, 3, 'source.kind', 'missing required key "kind" (one of: postgres, debezium)']] },
  { name: 'empty source', files: { [C]: 'source:\nmappings: mappings\n' }, errors: [[C, 1, 1, 'source', 'expected a map, got an empty value']] },
  // config file: values
  { name: 'unknown source kind', files: { [C]: 'source:\n  kind: mysql\n  url: postgres://db/x\nmappings: mappings\n' }, errors: [[C, 2, 9, 'source.kind', 'unknown source kind "mysql"; expected one of: postgres, debezium']] },
  {
    name: 'debezium without topics',
    files: { [C]: 'source:\n  kind: debezium\n  brokers: [localhost:9092]\nmappings: mappings\n' },
    errors: [[C, 2, 3, 'source.topics', 'give either "topics" or "topicPattern"']],
  },
  {
    name: 'debezium bad topic pattern',
    files: { [C]: 'source:\n  kind: debezium\n  brokers: [localhost:9092]\n  topicPattern: "app.(public"\nmappings: mappings\n' },
    errors: [[C, 4, 17, 'source.topicPattern', 'not a valid regular expression']],
  },
  {
    name: 'debezium lookups without a database',
    files: {
      [C]: 'source:\n  kind: debezium\n  brokers: [localhost:9092]\n  topics: [app.public.users]\nmappings: mappings\n',
      [M]: rule('    lookup:\n      o:\n        sql: "SELECT 1 AS x WHERE $1 IS NOT NULL"\n        params: [id]\n    invalidate: ["k:{o.x}"]\n'),
    },
    errors: [[C, 2, 3, 'source', 'rules with a lookup need a database to query: set source.url']],
  },
  {
    name: 'debezium tableIdentities misspelt',
    files: { [C]: `${DEBEZIUM}  tableIdentities:\n    users: fulll\nmappings: mappings\n` },
    errors: [[C, 6, 12, 'source.tableIdentities.users', 'expected full, default, nothing, or { index: [columns of the identity index] }']],
  },
  {
    name: 'debezium tableIdentities index without columns',
    files: { [C]: `${DEBEZIUM}  tableIdentities:\n    users: { index: [] }\nmappings: mappings\n` },
    errors: [[C, 6, 21, 'source.tableIdentities.users.index', 'list the columns of the identity index']],
  },
  {
    name: 'debezium tableIdentities for a table no rule maps',
    files: { [C]: `${DEBEZIUM}  tableIdentities:\n    public.usres: full\n    "*": default\nmappings: mappings\n` },
    errors: [[C, 6, 5, 'source.tableIdentities["public.usres"]', 'no mapping rule names table "public.usres" (did you mean "public.users"?)']],
  },
  {
    name: 'debezium tableIdentities: unknown table and bad value reported together',
    files: { [C]: `${DEBEZIUM}  tableIdentities:\n    userz: full\n    users: { index: [] }\nmappings: mappings\n` },
    errors: [
      [C, 6, 5, 'source.tableIdentities.userz', 'no mapping rule names table "public.userz" (did you mean "public.users"?)'],
      [C, 7, 21, 'source.tableIdentities.users.index', 'list the columns of the identity index'],
    ],
  },
  {
    name: 'debezium tableIdentities with a bad table name',
    files: { [C]: `${DEBEZIUM}  tableIdentities:\n    a.b.c: full\nmappings: mappings\n` },
    errors: [[C, 6, 5, 'source.tableIdentities["a.b.c"]', 'table must be "table" or "schema.table"']],
  },
  {
    name: 'debezium tableIdentities and url together',
    files: { [C]: `${DEBEZIUM}  url: postgres://localhost/app\n  tableIdentities: { users: full }\nmappings: mappings\n` },
    errors: [[C, 6, 20, 'source.tableIdentities', 'with "url" set, replica identities are read from the database']],
  },
  { name: 'source is a string', files: { [C]: 'source: postgres\nmappings: mappings\n' }, errors: [[C, 1, 9, 'source', 'expected a map, got "postgres"']] },
  { name: 'bad slot name', files: { [C]: source('  slot: My-Slot\n') }, errors: [[C, 4, 9, 'source.slot', '1 to 63 characters of lower-case letters, digits and "_"']] },
  { name: 'slot name too long', files: { [C]: source(`  slot: ${'s'.repeat(64)}\n`) }, errors: [[C, 4, 9, 'source.slot', 'replication slot name']] },
  { name: 'publication too long', files: { [C]: source(`  publication: ${'p'.repeat(64)}\n`) }, errors: [[C, 4, 16, 'source.publication', 'must be at most 63 characters long']] },
  { name: 'negative heartbeat', files: { [C]: source('  heartbeatSeconds: -1\n') }, errors: [[C, 4, 21, 'source.heartbeatSeconds', 'must be at least 0, got -1']] },
  { name: 'port is text', files: { [C]: config('http:\n  port: high\n') }, errors: [[C, 6, 9, 'http.port', 'expected a number, got "high"']] },
  { name: 'port out of range', files: { [C]: config('http: { port: 70000 }\n') }, errors: [[C, 5, 15, 'http.port', 'must be at most 65535, got 70000']] },
  { name: 'port not whole', files: { [C]: config('http:\n  port: 80.5\n') }, errors: [[C, 6, 9, 'http.port', 'expected a whole number, got 80.5']] },
  { name: 'maxChanges zero', files: { [C]: config('batch:\n  maxChanges: 0\n') }, errors: [[C, 6, 15, 'batch.maxChanges', 'must be at least 1, got 0']] },
  { name: 'maxWaitMs too long', files: { [C]: config('batch:\n  maxWaitMs: 60000\n') }, errors: [[C, 6, 14, 'batch.maxWaitMs', 'must be at most 10000, got 60000']] },
  {
    name: 'bad log level',
    files: { [C]: config('log:\n  level: verbose\n') },
    errors: [[C, 6, 10, 'log.level', 'expected one of fatal, error, warn, info, debug, trace, silent, got "verbose"']],
  },
  { name: 'bad delete command', files: { [C]: config('redis:\n  deleteCommand: unlinkk\n') }, errors: [[C, 6, 18, 'redis.deleteCommand', 'got "unlinkk" (did you mean "unlink"?)']] },
  { name: 'section is a list', files: { [C]: config('redis: []\n') }, errors: [[C, 5, 8, 'redis', 'expected a map, got a list']] },
  // config file: unknown keys at every level
  { name: 'unknown top-level key', files: { [C]: config('redsi: {}\n') }, errors: [[C, 5, 1, 'redsi', 'unknown key "redsi" (did you mean "redis"?)']] },
  { name: 'unknown source key', files: { [C]: source('  slots: x\n') }, errors: [[C, 4, 3, 'source.slots', 'unknown key "slots" (did you mean "slot"?)']] },
  { name: 'unknown redis key', files: { [C]: config('redis:\n  prefix: "app:"\n') }, errors: [[C, 6, 3, 'redis.prefix', 'unknown key "prefix" (did you mean "keyPrefix"?)']] },
  { name: 'unknown http key', files: { [C]: config('http:\n  bind: 0.0.0.0\n') }, errors: [[C, 6, 3, 'http.bind', 'unknown key "bind"']] },
  { name: 'unknown batch key', files: { [C]: config('batch:\n  maxWait: 5\n') }, errors: [[C, 6, 3, 'batch.maxWait', 'unknown key "maxWait" (did you mean "maxWaitMs"?)']] },
  { name: 'unknown log key', files: { [C]: config('log:\n  lvl: debug\n') }, errors: [[C, 6, 3, 'log.lvl', 'unknown key "lvl"']] },
  // config file: environment and the mappings path
  { name: 'unset variable', files: { [C]: 'source:\n  kind: postgres\n  url: ${DATABASE_URL}\nmappings: mappings\n' }, errors: [[C, 3, 8, 'source.url', 'environment variable DATABASE_URL is not set']] },
  { name: 'unset variable in mappings', files: { [C]: 'source: { kind: postgres, url: postgres://db/x }\nmappings: ${MAPPINGS}\n' }, errors: [[C, 2, 11, 'mappings', 'environment variable MAPPINGS is not set']] },
  { name: 'mappings path missing', files: { [C]: 'source: { kind: postgres, url: postgres://db/x }\nmappings: ./mapping\n' }, errors: [[C, 2, 11, 'mappings', '"./mapping" does not exist']] },
  { name: 'mappings directory empty', files: { [M]: null, 'mappings/README.md': '# rules go here\n' }, errors: [[C, 4, 11, 'mappings', 'holds no *.yaml or *.yml mapping file']] },
  { name: 'mappings empty string', files: { [C]: 'source: { kind: postgres, url: postgres://db/x }\nmappings: ""\n' }, errors: [[C, 2, 11, 'mappings', 'must not be empty']] },
  { name: 'no rule in any file', files: { [M]: 'rules: []\n' }, errors: [[C, 4, 11, 'mappings', 'the mapping files define no rule']] },

  // mapping files: YAML and shape
  { name: 'mapping syntax error', files: { [M]: 'rules:\n  - table: users\n    invalidate: ["user:{id}"\n' }, errors: [[M, 4, 1, '', 'YAML syntax error']] },
  { name: 'mapping duplicate key', files: { [M]: rule('    table: posts\n    invalidate: [a]\n') }, errors: [[M, 3, 5, 'rules[0].table', 'duplicate key "table"']] },
  { name: 'mapping file empty', files: { [M]: '' }, errors: [[M, 1, 1, '', 'mapping file is empty']] },
  { name: 'mapping root is a list', files: { [M]: '- table: users\n' }, errors: [[M, 1, 1, '', 'expected a map, got a list']] },
  {
    name: 'mapping without rules',
    files: { [M]: 'rule:\n  - table: users\n' },
    errors: [
      [M, 1, 1, 'rules', 'missing required key "rules"'],
      [M, 1, 1, 'rule', 'unknown key "rule" (did you mean "rules"?)'],
    ],
  },
  { name: 'rules is a map', files: { [M]: 'rules:\n  table: users\n' }, errors: [[M, 2, 3, 'rules', 'expected a list, got a map']] },
  { name: 'unknown mapping top-level key', files: { [M]: BASE_MAPPING + 'version: 2\n' }, errors: [[M, 4, 1, 'version', 'unknown key "version"']] },
  // mapping files: rules
  { name: 'bad operation', files: { [M]: rule('    on: [insert, upsert]\n    invalidate: [a]\n') }, errors: [[M, 3, 18, 'rules[0].on[1]', 'expected one of insert, update, delete, truncate, got "upsert"']] },
  { name: 'operation twice', files: { [M]: rule('    on: [insert, delete, insert]\n    invalidate: [a]\n') }, errors: [[M, 3, 26, 'rules[0].on[2]', '"insert" is listed twice']] },
  { name: 'no operation', files: { [M]: rule('    on: []\n    invalidate: [a]\n') }, errors: [[M, 3, 9, 'rules[0].on', 'must list at least 1 item']] },
  { name: 'operations not a list', files: { [M]: rule('    on: insert\n    invalidate: [a]\n') }, errors: [[M, 3, 9, 'rules[0].on', 'expected a list, got "insert"']] },
  { name: 'unknown rule key', files: { [M]: rule('    invalidat: ["user:{id}"]\n') }, errors: [[M, 3, 5, 'rules[0].invalidat', 'unknown key "invalidat" (did you mean "invalidate"?)']] },
  {
    name: 'unknown when key',
    files: { [M]: rule('    when:\n      change: [email]\n    invalidate: [a]\n') },
    errors: [
      [M, 4, 7, 'rules[0].when.changed', 'missing required key "changed"'],
      [M, 4, 7, 'rules[0].when.change', 'unknown key "change" (did you mean "changed"?)'],
    ],
  },
  { name: 'unknown fallback key', files: { [M]: rule('    invalidate: [a]\n    fallback:\n      delete: [b]\n') }, errors: [[M, 5, 7, 'rules[0].fallback.delete', 'unknown key "delete"']] },
  { name: 'template not a string', files: { [M]: rule('    invalidate: [42]\n') }, errors: [[M, 3, 18, 'rules[0].invalidate[0]', 'expected a string, got 42']] },
  { name: 'slotLost recover without fallbacks', files: { [C]: source('  slotLost: recover\n') }, errors: [[C, 4, 13, 'source.slotLost', 'these rules have none: mappings/users.yaml#rules[0]']] },
  { name: 'slotLost unknown value', files: { [C]: source('  slotLost: ignore\n') }, errors: [[C, 4, 13, 'source.slotLost', 'expected one of fail, recover, got "ignore"']] },
  // mapping files: lookups, tags, patterns
  { name: 'lookup without sql', files: { [M]: rule('    lookup:\n      author:\n        params: [user_id]\n    invalidate: ["k:{author.name}"]\n') }, errors: [[M, 5, 9, 'rules[0].lookup.author.sql', 'missing required key "sql"']] },
  { name: 'lookup params not a list', files: { [M]: rule('    lookup:\n      author:\n        sql: "SELECT name FROM users WHERE id = $1"\n        params: user_id\n    invalidate: ["k:{author.name}"]\n') }, errors: [[M, 6, 17, 'rules[0].lookup.author.params', 'expected a list, got "user_id"']] },
  { name: 'lookup bad name', files: { [M]: rule('    lookup:\n      "the author":\n        sql: "SELECT 1"\n    invalidate: [a]\n') }, errors: [[M, 4, 7, 'rules[0].lookup["the author"]', 'a lookup name is a letter or _ followed by letters, digits or _, got "the author"']] },
  { name: 'lookup unknown key', files: { [M]: rule('    lookup:\n      author:\n        sql: "SELECT name FROM users WHERE id = $1"\n        params: [user_id]\n        timeout: 5\n    invalidate: ["k:{author.name}"]\n') }, errors: [[M, 7, 9, 'rules[0].lookup.author.timeout', 'unknown key "timeout" (did you mean "timeoutMs"?)']] },
  { name: 'lookup params do not match placeholders', files: { [M]: rule('    lookup:\n      author:\n        sql: "SELECT name FROM users WHERE id = $1 AND org = $2"\n        params: [user_id]\n    invalidate: ["k:{author.name}"]\n') }, errors: [[M, 6, 17, 'rules[0].lookup.author.params', 'placeholders up to $2 but params lists 1 column']] },
  { name: 'template names an undeclared lookup', files: { [M]: rule('    lookup:\n      author:\n        sql: "SELECT name FROM users WHERE id = $1"\n        params: [user_id]\n    invalidate: ["k:{autor.name}"]\n') }, errors: [[M, 7, 18, 'rules[0].invalidate[0]', 'names no lookup "autor" (declared: author)']] },
  { name: 'tags not a list', files: { [M]: rule('    tags: "user:{id}"\n') }, errors: [[M, 3, 11, 'rules[0].tags', 'expected a list, got "user:{id}"']] },
  { name: 'pattern with an unclosed brace', files: { [M]: rule('    patterns: ["p:{id:*"]\n') }, errors: [[M, 3, 16, 'rules[0].patterns[0]', 'unclosed "{"']] },
  { name: 'fallback tag with a column', files: { [M]: rule('    invalidate: [a]\n    fallback:\n      tags: ["t:{id}"]\n') }, errors: [[M, 5, 14, 'rules[0].fallback.tags[0]', 'fallback keys are fixed names']] },
  // mapping files: what the rules compiler finds
  { name: 'unclosed brace', files: { [M]: rule('    invalidate: ["user:{id"]\n') }, errors: [[M, 3, 18, 'rules[0].invalidate[0]', 'unclosed "{"']] },
  { name: 'unmatched closing brace', files: { [M]: rule('    invalidate:\n      - user:id}\n') }, errors: [[M, 4, 9, 'rules[0].invalidate[0]', 'unmatched "}"']] },
  { name: 'empty placeholder', files: { [M]: rule('    bump: ["users:{}"]\n') }, errors: [[M, 3, 12, 'rules[0].bump[0]', 'empty placeholder "{}"']] },
  {
    name: 'fallback key with a column',
    files: { [M]: rule('    invalidate: ["user:{id}"]\n    fallback:\n      bump: ["users:{id}"]\n') },
    errors: [[M, 5, 14, 'rules[0].fallback.bump[0]', 'fallback keys are fixed names']],
  },
  { name: 'fallback without action', files: { [M]: rule('    invalidate: [a]\n    fallback: {}\n') }, errors: [[M, 4, 15, 'rules[0].fallback', 'fallback has no action']] },
  { name: 'rule without action', files: { [M]: rule('    on: [delete]\n') }, errors: [[M, 2, 5, 'rules[0]', 'rule has no action']] },
  { name: 'bad table name', files: { [M]: 'rules:\n  - table: app.public.users\n    bump: [v]\n' }, errors: [[M, 2, 12, 'rules[0].table', 'table must be "table" or "schema.table", got "app.public.users"']] },
  { name: 'unclosed quote in table name', files: { [M]: 'rules:\n  - table: \'"My Table\'\n    bump: [v]\n' }, errors: [[M, 2, 12, 'rules[0].table', 'unclosed quote in table name']] },
  { name: 'when.changed empty', files: { [M]: rule('    when: { changed: [] }\n    bump: [v]\n') }, errors: [[M, 3, 22, 'rules[0].when.changed', 'when.changed lists no column']] },
  // mapping files: query rules
  { name: 'query and table both', files: { [M]: rule('    query: "SELECT id FROM users WHERE id = $1"\n    params: [id]\n    invalidate: ["user:{id}"]\n') }, errors: [[M, 3, 12, 'rules[0].query', 'a rule has "table" or "query", not both']] },
  { name: 'rule without table or query', files: { [M]: 'rules:\n  - invalidate: [a]\n' }, errors: [[M, 2, 5, 'rules[0]', 'a rule needs "table" (the table it maps) or "query"']] },
  { name: 'query rule with when', files: { [M]: query('SELECT id FROM users WHERE id = $1', '    when: { changed: [id] }\n') }, errors: [[M, 5, 11, 'rules[0].when', 'a query rule derives "when" from the query']] },
  { name: 'params on a table rule', files: { [M]: rule('    params: [id]\n    invalidate: ["user:{id}"]\n') }, errors: [[M, 3, 13, 'rules[0].params', '"params" belongs to a query rule']] },
  { name: 'query does not parse', files: { [M]: query('SELECT id FROM users WHER id = $1') }, errors: [[M, 2, 12, 'rules[0].query', 'the query does not parse: syntax error at or near "id"']] },
  { name: 'query not a SELECT', files: { [M]: query('UPDATE users SET name = $1') }, errors: [[M, 2, 12, 'rules[0].query', 'the query must be a SELECT']] },
  { name: 'query of two statements', files: { [M]: query('SELECT id FROM users WHERE id = $1; SELECT 1') }, errors: [[M, 2, 12, 'rules[0].query', 'the query must be one statement, found 2']] },
  { name: 'query params do not match placeholders', files: { [M]: 'rules:\n  - query: "SELECT id FROM users WHERE id = $1 AND org = $2"\n    params: [id]\n    invalidate: ["user:{id}"]\n' }, errors: [[M, 3, 13, 'rules[0].params', 'the query uses $1..$2 but params names 1']] },
  { name: 'query key names no parameter', files: { [M]: 'rules:\n  - query: "SELECT id FROM users WHERE id = $1"\n    params: [id]\n    invalidate: ["user:{ident}"]\n' }, errors: [[M, 4, 18, 'rules[0].invalidate[0]', '"{ident}" in "user:{ident}" is not a parameter of the query (its parameters are id)']] },
  { name: 'query parameter name invalid', files: { [M]: 'rules:\n  - query: "SELECT id FROM users WHERE id = $1"\n    params: ["user id"]\n    invalidate: ["k"]\n' }, errors: [[M, 3, 14, 'rules[0].params[0]', 'a parameter name is a letter or _']] },
  { name: 'query with an OR across tables', files: { [M]: query('SELECT c.id FROM comments c JOIN users u ON u.id = c.user_id WHERE u.id = $1 AND (u.active OR c.pinned)') }, errors: [[M, 2, 12, 'rules[0].query', 'a condition on several tables (u, c) other than an equality between two columns is not supported']] },
  { name: 'query with a non-equality join', files: { [M]: query('SELECT c.id FROM comments c JOIN users u ON c.created > u.created WHERE u.id = $1') }, errors: [[M, 2, 12, 'rules[0].query', 'a condition on several tables (c, u)']] },
  { name: 'query with a subquery', files: { [M]: query('SELECT id FROM users WHERE id = $1 AND id IN (SELECT user_id FROM admins)') }, errors: [[M, 2, 12, 'rules[0].query', 'subqueries are not supported']] },
  { name: 'query with an outer join', files: { [M]: query('SELECT c.id FROM users u LEFT JOIN comments c ON c.user_id = u.id WHERE u.id = $1') }, errors: [[M, 2, 12, 'rules[0].query', 'LEFT JOIN is not supported, only inner joins on equalities']] },
  { name: 'query with a key parameter compared by range', files: { [M]: query('SELECT id FROM comments WHERE likes > $1') }, errors: [[M, 2, 12, 'rules[0].query', '$1 (id) is in the key, so it must be compared by equality with a column']] },
  {
    name: 'query with key parameters on two tables',
    files: { [M]: 'rules:\n  - query: "SELECT c.id FROM comments c JOIN users u ON u.id = c.user_id WHERE u.name = $1 AND c.kind = $2"\n    params: [name, kind]\n    invalidate: ["k:{name}:{kind}"]\n' },
    errors: [[M, 2, 12, 'rules[0].query', "the key's parameters bind to different tables ($1 on u, $2 on c)"]],
  },
  { name: 'query with an unqualified column in a join', files: { [M]: query('SELECT c.id FROM comments c JOIN users u ON u.id = c.user_id WHERE name = $1') }, errors: [[M, 2, 12, 'rules[0].query', 'column "name" is not qualified']] },
  { name: 'query on tables not joined', files: { [M]: query('SELECT c.id FROM comments c, users u WHERE u.id = $1') }, errors: [[M, 2, 12, 'rules[0].query', 'u is not joined to c by an equality between columns']] },
  { name: 'coarse on a table rule', files: { [M]: rule('    coarse: pattern\n    invalidate: ["user:{id}"]\n') }, errors: [[M, 3, 13, 'rules[0].coarse', '"coarse" belongs to a query rule']] },
  { name: 'coarse not pattern or a tag', files: { [M]: query('SELECT id FROM users WHERE id = $1', '    coarse: scan\n') }, errors: [[M, 5, 13, 'rules[0].coarse', '']] },
  { name: 'query joined with USING', files: { [M]: query('SELECT c.id FROM comments c JOIN users u USING (id) WHERE u.id = $1') }, errors: [[M, 2, 12, 'rules[0].query', 'JOIN ... USING is not supported']] },
  {
    name: 'schema and template problems in one file keep their rule index',
    files: { [M]: 'rules:\n  - table: users\n    on: [upsert]\n    bump: [v]\n  - table: posts\n    invalidate: ["post:{id"]\n' },
    errors: [
      [M, 3, 10, 'rules[0].on[0]', 'got "upsert"'],
      [M, 6, 18, 'rules[1].invalidate[0]', 'unclosed "{"'],
    ],
  },
];

let root: string;
let counter = 0;
beforeAll(async () => {
  root = await mkdtemp(path.join(tmpdir(), 'cdc-config-errors-'));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

test('the corpus is large enough to mean something', () => {
  expect(cases.length).toBeGreaterThanOrEqual(25);
  expect(new Set(cases.map((c) => c.name)).size).toBe(cases.length);
});

test.each(cases)('$name', async ({ files, env, errors }) => {
  const dir = path.join(root, String(counter++));
  const all: Record<string, string | null> = { [C]: BASE_CONFIG, [M]: BASE_MAPPING, ...files };
  for (const [name, text] of Object.entries(all)) {
    if (text === null) continue;
    await mkdir(path.dirname(path.join(dir, name)), { recursive: true });
    await writeFile(path.join(dir, name), text);
  }

  const err = await loadConfig(path.join(dir, C), env ?? {}).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ConfigError);
  const actual = (err as ConfigError).problems
    .filter((p) => p.severity === 'error')
    .map((p) => [path.relative(dir, p.file), p.line, p.column, p.path, p.message]);
  expect(actual).toHaveLength(errors.length);
  errors.forEach(([file, line, column, docPath, fragment], i) => {
    expect(actual[i]).toEqual([file, line, column, docPath, expect.stringContaining(fragment)]);
  });
});
