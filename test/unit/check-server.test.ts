import { describe, expect, it } from 'vitest';
import type { PostgresReached, SlotFacts } from '../../src/commands/check/facts.js';
import { serverChecks, slotChecks } from '../../src/commands/check/server-checks.js';
import { database, problems, render } from './check-fixtures.js';

const SLOT = 'cdc_invalidator';
const server = (o: Partial<PostgresReached['server']>) => database({ server: { ...database().server, ...o } });

describe('check: server settings and privileges', () => {
  it('a healthy server gives only ok lines', () => {
    expect(render(serverChecks(database(), SLOT))).toEqual([
      'ok database cdc@db.internal:5432/app: connected (PostgreSQL 15.8)',
      'ok wal_level is logical',
      'ok max_replication_slots is 10, 1 in use',
      'ok max_wal_senders is 10, 0 in use',
      'ok max_slot_wal_keep_size is 10 GB: a slot left behind longer than that loses its WAL',
      'ok role "cdc" has REPLICATION: replication connection opened',
    ]);
  });

  const cases: Array<{ name: string; facts: PostgresReached; problems: Array<string | RegExp> }> = [
    {
      name: 'wal_level replica',
      facts: server({ walLevel: 'replica' }),
      problems: ['fail wal_level is replica: logical replication needs logical | ALTER SYSTEM SET wal_level = logical; then restart PostgreSQL'],
    },
    {
      name: 'wal_level changed but not yet restarted',
      facts: server({ walLevel: 'replica', walLevelPendingRestart: true }),
      problems: [/^fail wal_level is replica \(a changed value waits for a restart\)/],
    },
    {
      name: 'a standby',
      facts: server({ inRecovery: true }),
      problems: [/^fail the database is a standby \(in recovery\).* \| point source.url at the primary$/],
    },
    {
      name: 'PostgreSQL 12',
      facts: server({ version: '12.19', versionNum: 120019 }),
      problems: ['fail PostgreSQL 12.19 is too old: the worker needs 13 or newer | upgrade PostgreSQL'],
    },
    {
      name: 'no replication slots allowed',
      facts: server({ maxReplicationSlots: 0, slotsInUse: 0 }),
      problems: [/^fail max_replication_slots is 0: .* \| ALTER SYSTEM SET max_replication_slots = 10; then restart PostgreSQL$/],
    },
    {
      name: 'every replication slot taken, and the worker needs a new one',
      facts: server({ maxReplicationSlots: 4, slotsInUse: 4 }),
      problems: [
        /^fail max_replication_slots is 4 and all 4 are in use: the worker cannot create slot "cdc_invalidator" \| ALTER SYSTEM SET max_replication_slots = 5;/,
      ],
    },
    {
      name: 'every wal sender busy',
      facts: server({ maxWalSenders: 2, walSendersInUse: 2 }),
      problems: [/^fail max_wal_senders is 2 and all 2 are in use: .* \| ALTER SYSTEM SET max_wal_senders = 3; then restart PostgreSQL$/],
    },
    {
      name: 'unlimited max_slot_wal_keep_size',
      facts: server({ maxSlotWalKeepSizeMb: -1 }),
      problems: [/^warn max_slot_wal_keep_size is -1 \(unlimited\).* \| ALTER SYSTEM SET max_slot_wal_keep_size = '10GB'; SELECT pg_reload_conf\(\);/],
    },
    {
      name: 'a role without REPLICATION',
      facts: database({
        role: { ...database().role, name: 'App User', sql: '"App User"', replication: false },
        replication: { ok: false, error: { code: '42501', message: 'must be superuser or replication role to start walsender' } },
      }),
      problems: [
        'fail role "App User" lacks the REPLICATION attribute: the worker cannot open its replication connection ' +
          '(must be superuser or replication role to start walsender) | ALTER ROLE "App User" REPLICATION;  (as a superuser)',
      ],
    },
    {
      name: 'a replication connection refused by pg_hba.conf',
      facts: database({ replication: { ok: false, error: { code: '28000', message: 'no pg_hba.conf entry for replication connection' } } }),
      problems: [/^fail replication connection refused: no pg_hba.conf entry .* \| add a pg_hba.conf line/],
    },
  ];

  it.each(cases)('$name', ({ facts, problems: expected }) => {
    const found = problems(serverChecks(facts, SLOT));
    expect(found).toHaveLength(expected.length);
    expected.forEach((e, i) => (typeof e === 'string' ? expect(found[i]).toBe(e) : expect(found[i]).toMatch(e)));
  });

  it('a role that may replicate without the attribute (a managed service granting it otherwise) is ok', () => {
    const facts = database({ role: { ...database().role, replication: false } });
    expect(render(serverChecks(facts, SLOT))).toContain('ok role "cdc" may replicate: replication connection opened');
  });

  const unreachable: Array<{ code: string | null; message: string; fix: RegExp }> = [
    { code: 'ECONNREFUSED', message: 'connect ECONNREFUSED 10.0.0.5:5432', fix: /start PostgreSQL, or correct the host and port/ },
    { code: 'ENOTFOUND', message: 'getaddrinfo ENOTFOUND db.internal', fix: /correct the host in source.url/ },
    { code: 'TIMEOUT', message: 'Connection terminated due to connection timeout', fix: /firewall/ },
    { code: '28P01', message: 'password authentication failed for user "cdc"', fix: /correct the user and password/ },
    { code: '28000', message: 'no pg_hba.conf entry for host "10.0.0.9", user "cdc", database "app"', fix: /pg_hba.conf line/ },
    { code: '28000', message: 'role "cdc" does not exist', fix: /CREATE ROLE name LOGIN REPLICATION/ },
    { code: '3D000', message: 'database "ap" does not exist', fix: /correct the database name/ },
    { code: null, message: 'self-signed certificate', fix: /correct source.url/ },
  ];

  it.each(unreachable)('unreachable: $message', ({ code, message, fix }) => {
    const lines = serverChecks({ reachable: false, target: 'cdc@db.internal:5432/app', error: { code, message } }, SLOT);
    expect(lines).toHaveLength(1);
    expect(lines[0]!.status).toBe('fail');
    expect(lines[0]!.text).toMatch(/^database cdc@db.internal:5432\/app: cannot connect: /);
    expect(lines[0]!.fix).toMatch(fix);
  });
});

describe('check: the replication slot', () => {
  const slot = (o: Partial<SlotFacts> = {}): SlotFacts => ({
    name: SLOT,
    type: 'logical',
    plugin: 'pgoutput',
    database: 'app',
    active: false,
    activePid: null,
    activeApplication: null,
    activeClient: null,
    retainedBytes: 1536 * 1024,
    walStatus: 'reserved',
    ...o,
  });

  const cases: Array<{ name: string; facts: PostgresReached; lines: Array<string | RegExp> }> = [
    {
      name: 'missing, and the role may create it',
      facts: database(),
      lines: ['ok slot "cdc_invalidator" does not exist yet: the worker creates it at start (pgoutput)'],
    },
    {
      name: 'missing, and the role may not create it',
      facts: database({
        role: { ...database().role, replication: false },
        replication: { ok: false, error: { code: '42501', message: 'must be superuser or replication role' } },
      }),
      lines: [/^fail slot "cdc_invalidator" does not exist, and role "cdc" may not create it .* \| ALTER ROLE cdc REPLICATION;/],
    },
    {
      name: 'healthy and idle',
      facts: database({ slot: slot() }),
      lines: ['ok slot "cdc_invalidator": pgoutput, database "app", inactive, retains 1.5 MB of WAL (wal_status reserved)'],
    },
    {
      name: 'streamed by another process',
      facts: database({ slot: slot({ active: true, activePid: 4242, activeApplication: 'cdc-invalidator', activeClient: '10.0.0.7' }) }),
      lines: [
        /^ok slot "cdc_invalidator": pgoutput, database "app", active, /,
        'warn slot "cdc_invalidator" is being streamed by pid 4242, application "cdc-invalidator", client 10.0.0.7: a worker ' +
          'started now waits until that process lets go (expected when this is your running worker) | ' +
          'if nothing should stream it, end that process: SELECT pg_terminate_backend(4242);',
      ],
    },
    {
      name: 'another plugin',
      facts: database({ slot: slot({ plugin: 'wal2json' }) }),
      lines: [
        'fail slot "cdc_invalidator" is a logical slot with plugin "wal2json", not a logical pgoutput slot | ' +
          "choose another source.slot, or drop this one if nothing uses it: SELECT pg_drop_replication_slot('cdc_invalidator');",
      ],
    },
    {
      name: 'a physical slot',
      facts: database({ slot: slot({ type: 'physical', plugin: null, database: null }) }),
      lines: [/^fail slot "cdc_invalidator" is a physical slot, not a logical pgoutput slot/],
    },
    {
      name: 'another database',
      facts: database({ slot: slot({ database: 'billing' }) }),
      lines: [/^fail slot "cdc_invalidator" belongs to database "billing", not "app" \| choose another source.slot/],
    },
    {
      name: 'lost',
      facts: database({ slot: slot({ walStatus: 'lost', retainedBytes: null }) }),
      lines: [
        /^fail slot "cdc_invalidator" has lost WAL it needed \(wal_status lost\).* \| SELECT pg_drop_replication_slot\('cdc_invalidator'\);\nstart the worker.*\nthen flush the cached entries/s,
      ],
    },
    {
      name: 'extended',
      facts: database({ slot: slot({ walStatus: 'extended', retainedBytes: 3 * 1024 ** 3 }) }),
      lines: [/retains 3 GB of WAL \(wal_status extended\)$/, /^warn slot "cdc_invalidator" holds back more WAL than max_wal_size/],
    },
    {
      name: 'unreserved',
      facts: database({ slot: slot({ walStatus: 'unreserved' }) }),
      lines: [/^ok /, /^warn slot "cdc_invalidator" is about to lose WAL it needs \(wal_status unreserved\).* \| start the worker now/],
    },
  ];

  it.each(cases)('$name', ({ facts, lines }) => {
    const found = render(slotChecks(facts, SLOT));
    expect(found).toHaveLength(lines.length);
    lines.forEach((e, i) => (typeof e === 'string' ? expect(found[i]).toBe(e) : expect(found[i]).toMatch(e)));
  });
});
