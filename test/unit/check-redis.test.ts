import { describe, expect, it } from 'vitest';
import type { RedisFacts } from '../../src/commands/check/facts.js';
import { olderThan, redisChecks } from '../../src/commands/check/redis-checks.js';
import { exitCode, formatBytes, formatReport, maskSecrets, ok, fail, warn } from '../../src/commands/check/report.js';
import { urlSecrets } from '../../src/commands/check.js';
import { redis, render } from './check-fixtures.js';

describe('check: Redis', () => {
  const cases: Array<{ name: string; facts: RedisFacts; cluster?: boolean; waitReplicas?: number; lines: Array<string | RegExp> }> = [
    {
      name: 'healthy',
      facts: redis(),
      lines: [
        'ok redis 127.0.0.1:6379: reachable (Redis 7.2.4)',
        'ok redis 127.0.0.1:6379: writable (SET and DEL of "app:cdc-invalidator:check:abc123")',
        'ok redis 127.0.0.1:6379: runs Lua scripts (SCRIPT LOAD, EVALSHA with SET ... KEEPTTL)',
      ],
    },
    {
      name: 'connection refused',
      facts: { reachable: false, target: '127.0.0.1:6379', error: { code: 'ECONNREFUSED', message: 'connect ECONNREFUSED 127.0.0.1:6379' } },
      lines: ['fail redis 127.0.0.1:6379: cannot connect: connection refused | start Redis, or correct the host and port in redis.url'],
    },
    {
      name: 'a password is needed',
      facts: { reachable: false, target: 'cache:6379', error: { code: 'NOAUTH', message: 'NOAUTH Authentication required.' } },
      lines: [/^fail redis cache:6379: cannot connect: NOAUTH Authentication required. \| put the right user and password in redis.url/],
    },
    {
      name: 'too old for KEEPTTL',
      facts: redis({ version: '5.0.14' }),
      lines: [/^ok /, /^fail Redis 5.0.14 is too old: .*KEEPTTL, which needs Redis 6.0 \| upgrade Redis to 6.0 or newer$/, /^ok /, /^ok /],
    },
    {
      name: 'cluster mode',
      facts: redis({ clusterEnabled: true }),
      lines: [/^ok /, /^fail redis 127.0.0.1:6379 runs in cluster mode, and redis.url names one server: .* \| list the cluster's nodes as redis.cluster/, /^ok /, /^ok /],
    },
    {
      name: 'redis.cluster and a cluster',
      facts: redis({ clusterEnabled: true, target: 'cluster (seeds 10.0.0.1:7000)' }),
      cluster: true,
      lines: [/^ok redis cluster \(seeds 10.0.0.1:7000\): reachable/, /^ok /, /^ok /],
    },
    {
      name: 'waitReplicas 1 and a primary without replicas',
      facts: redis({ replicas: 0 }),
      waitReplicas: 1,
      lines: [/^ok /, /^fail redis 127.0.0.1:6379: redis.waitReplicas is 1, and the primary has 0 replicas connected: every batch would wait .* \| connect 1 replica to every primary, or lower redis.waitReplicas/, /^ok /, /^ok /],
    },
    {
      name: 'waitReplicas 1 and a cluster whose masters have a replica each',
      facts: redis({ replicas: 1, clusterEnabled: true }),
      cluster: true,
      waitReplicas: 1,
      lines: [/^ok /, 'ok redis 127.0.0.1:6379: 1 replica connected to every master (redis.waitReplicas 1)', /^ok /, /^ok /],
    },
    {
      name: 'redis.cluster and a single server',
      facts: redis({ clusterEnabled: false }),
      cluster: true,
      lines: [/^ok /, /^fail redis 127.0.0.1:6379: redis.cluster names a server that is not in cluster mode \| use redis.url for a single server/, /^ok /, /^ok /],
    },
    {
      name: 'a read-only replica',
      facts: redis({
        role: 'slave',
        write: { ok: false, error: { code: 'READONLY', message: "READONLY You can't write against a read only replica." } },
        script: null,
      }),
      lines: [/^ok /, /^fail redis 127.0.0.1:6379: not writable: READONLY .* \| point redis.url at the primary \(this server's role is slave\)$/],
    },
    {
      name: 'ACL without write rights',
      facts: redis({ write: { ok: false, error: { code: 'NOPERM', message: 'NOPERM this user has no permissions to run the set command' } }, script: null }),
      lines: [/^ok /, /^fail .*not writable: NOPERM .* \| allow the Redis user to write keys like "app:cdc-invalidator:check:abc123"/],
    },
    {
      name: 'scripting disabled',
      facts: redis({ script: { ok: false, error: { code: null, message: "ERR unknown command 'evalsha'" } } }),
      lines: [/^ok /, /^ok /, /^fail redis 127.0.0.1:6379: cannot run the worker's Lua scripts: ERR unknown command 'evalsha' \| enable EVAL, EVALSHA and SCRIPT/],
    },
  ];

  it.each(cases)('$name', ({ facts, cluster, waitReplicas, lines }) => {
    const found = render(redisChecks(facts, { cluster: cluster ?? false, waitReplicas: waitReplicas ?? 0 }));
    expect(found).toHaveLength(lines.length);
    lines.forEach((e, i) => (typeof e === 'string' ? expect(found[i]).toBe(e) : expect(found[i]).toMatch(e)));
  });

  it.each([
    ['5.0.14', true],
    ['6.0.0', false],
    ['6.2.1', false],
    ['7.2.4', false],
    ['4.9', true],
    ['unknown', false],
  ] as const)('version %s is older than 6.0: %s', (version, older) => {
    expect(olderThan(version, [6, 0])).toBe(older);
  });
});

describe('check: the report', () => {
  it('prints a label per line, a fix under each problem and a summary', () => {
    const text = formatReport([
      ok('wal_level is logical'),
      warn('max_slot_wal_keep_size is -1', "ALTER SYSTEM SET max_slot_wal_keep_size = '10GB';"),
      fail('slot lost', 'first\nsecond'),
    ]);
    expect(text).toBe(
      [
        'ok    wal_level is logical',
        'warn  max_slot_wal_keep_size is -1',
        "      fix: ALTER SYSTEM SET max_slot_wal_keep_size = '10GB';",
        'FAIL  slot lost',
        '      fix: first',
        '           second',
        '1 ok, 1 warning, 1 problem: fix the problems above before running the worker',
        '',
      ].join('\n'),
    );
  });

  it('exits 0 with warnings and 1 with a problem', () => {
    expect(exitCode([ok('a'), warn('b')])).toBe(0);
    expect(exitCode([ok('a'), fail('b')])).toBe(1);
    expect(formatReport([ok('a'), warn('b')])).toMatch(/1 ok, 1 warning, 0 problems: ready to run\n$/);
  });

  it('masks passwords wherever they turn up', () => {
    const secrets = urlSecrets('postgres://cdc:p%40ss-w0rd@db:5432/app');
    expect(secrets).toContain('p@ss-w0rd');
    expect(maskSecrets('auth failed for p@ss-w0rd and p%40ss-w0rd', secrets)).toBe('auth failed for *** and ***');
    expect(urlSecrets('redis://127.0.0.1:6379')).toEqual([]);
    expect(urlSecrets('not a url')).toEqual([]);
    expect(urlSecrets('postgres://postgres:postgres@db/app')).toEqual([]);
  });

  it.each([
    [512, '512 bytes'],
    [1536, '1.5 kB'],
    [16 * 1024 * 1024, '16 MB'],
    [10 * 1024 ** 3, '10 GB'],
    [123.4 * 1024 ** 3, '123 GB'],
  ])('%d bytes read as %s', (bytes, text) => {
    expect(formatBytes(bytes)).toBe(text);
  });
});
