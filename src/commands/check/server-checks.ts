import { quoteLiteral } from '../../lib/pg/sql.js';
import type { Failure, PostgresFacts, PostgresReached } from './facts.js';
import { fail, formatBytes, ok, warn, type CheckLine } from './report.js';

/** The oldest server the worker runs against: it reads pg_replication_slots.wal_status (13). */
const MIN_VERSION_NUM = 130000;

/** Connection, server settings and the role's replication privilege. */
export function serverChecks(facts: PostgresFacts, slotName: string): CheckLine[] {
  if (!facts.reachable) return [connectionFailure(facts.target, facts.error)];
  const { server } = facts;
  const lines: CheckLine[] = [ok(`database ${facts.target}: connected (PostgreSQL ${server.version})`)];

  if (server.versionNum < MIN_VERSION_NUM) {
    lines.push(fail(`PostgreSQL ${server.version} is too old: the worker needs 13 or newer`, 'upgrade PostgreSQL'));
  }
  if (server.inRecovery) {
    lines.push(
      fail(
        'the database is a standby (in recovery): the worker needs the primary, where it creates the ' +
          'publication and the slot and writes heartbeat messages',
        'point source.url at the primary',
      ),
    );
  }
  lines.push(walLevel(facts));
  lines.push(replicationSlots(facts, slotName));
  lines.push(walSenders(facts));
  lines.push(...slotWalKeepSize(facts));
  lines.push(replicationPrivilege(facts));
  return lines;
}

function walLevel({ server }: PostgresReached): CheckLine {
  if (server.walLevel === 'logical') return ok('wal_level is logical');
  const pending = server.walLevelPendingRestart ? ' (a changed value waits for a restart)' : '';
  return fail(
    `wal_level is ${server.walLevel}${pending}: logical replication needs logical`,
    'ALTER SYSTEM SET wal_level = logical; then restart PostgreSQL',
  );
}

function replicationSlots({ server, slot }: PostgresReached, slotName: string): CheckLine {
  const { maxReplicationSlots: max, slotsInUse: used } = server;
  if (max === 0) {
    return fail(
      'max_replication_slots is 0: no replication slot can exist',
      'ALTER SYSTEM SET max_replication_slots = 10; then restart PostgreSQL',
    );
  }
  if (slot === null && used >= max) {
    return fail(
      `max_replication_slots is ${max} and all ${used} are in use: the worker cannot create slot "${slotName}"`,
      `ALTER SYSTEM SET max_replication_slots = ${used + 1}; then restart PostgreSQL ` +
        "(or drop a slot nothing uses: SELECT pg_drop_replication_slot('name');)",
    );
  }
  return ok(`max_replication_slots is ${max}, ${used} in use`);
}

function walSenders({ server }: PostgresReached): CheckLine {
  const { maxWalSenders: max, walSendersInUse: used } = server;
  if (max === 0) {
    return fail(
      'max_wal_senders is 0: no replication connection is allowed',
      'ALTER SYSTEM SET max_wal_senders = 10; then restart PostgreSQL',
    );
  }
  if (used >= max) {
    return fail(
      `max_wal_senders is ${max} and all ${used} are in use: the worker's replication connection would be refused`,
      `ALTER SYSTEM SET max_wal_senders = ${used + 1}; then restart PostgreSQL`,
    );
  }
  return ok(`max_wal_senders is ${max}, ${used} in use`);
}

function slotWalKeepSize({ server }: PostgresReached): CheckLine[] {
  const mb = server.maxSlotWalKeepSizeMb;
  if (mb === null) return [];
  if (mb < 0) {
    return [
      warn(
        'max_slot_wal_keep_size is -1 (unlimited): while the worker is stopped, its slot keeps WAL until the disk is full',
        "ALTER SYSTEM SET max_slot_wal_keep_size = '10GB'; SELECT pg_reload_conf();  (size it to what the WAL disk can spare)",
      ),
    ];
  }
  return [ok(`max_slot_wal_keep_size is ${formatBytes(mb * 1024 * 1024)}: a slot left behind longer than that loses its WAL`)];
}

function replicationPrivilege({ role, replication }: PostgresReached): CheckLine {
  const who = `role "${role.name}"`;
  const attribute = role.superuser ? 'is a superuser' : role.replication ? 'has REPLICATION' : 'may replicate';
  if (replication.ok) return ok(`${who} ${attribute}: replication connection opened`);
  const { code, message } = replication.error;
  if (code === '42501' || !(role.superuser || role.replication)) {
    return fail(
      `${who} lacks the REPLICATION attribute: the worker cannot open its replication connection (${message})`,
      `ALTER ROLE ${role.sql} REPLICATION;  (as a superuser)`,
    );
  }
  if (code === '28000') {
    return fail(
      `replication connection refused: ${message}`,
      'add a pg_hba.conf line that lets this role connect to this database from here, then SELECT pg_reload_conf();',
    );
  }
  if (code === '53300') {
    return fail(`replication connection refused: ${message}`, 'raise max_wal_senders (then restart PostgreSQL), or end a walsender nothing needs');
  }
  return fail(`replication connection failed: ${message}`, 'correct source.url, or the server setting the message names');
}

/** An unreachable database: the one line that says why, and what to change. */
export function connectionFailure(target: string, error: Failure): CheckLine {
  const text = (why: string) => `database ${target}: cannot connect: ${why} (the other database checks need a connection)`;
  const message = error.message;
  switch (error.code) {
    case 'ECONNREFUSED':
      return fail(text('connection refused'), 'start PostgreSQL, or correct the host and port in source.url');
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return fail(text(`host not found (${message})`), 'correct the host in source.url');
    case 'ETIMEDOUT':
    case 'TIMEOUT':
      return fail(text('no answer in time'), 'check the host and port in source.url, and that no firewall drops the connection');
    case '28P01':
      return fail(text(message), 'correct the user and password in source.url');
    case '28000':
      return fail(
        text(message),
        message.includes('pg_hba.conf')
          ? 'add a pg_hba.conf line for this user, database and client address, then SELECT pg_reload_conf();'
          : message.includes('does not exist')
            ? 'correct the user in source.url, or create the role: CREATE ROLE name LOGIN REPLICATION;'
            : 'correct the user in source.url, or allow the role to log in: ALTER ROLE name LOGIN;',
      );
    case '3D000':
      return fail(text(message), 'correct the database name in source.url');
    case '53300':
      return fail(text(message), 'raise max_connections, or close idle connections');
    case '57P03':
      return fail(text(message), 'wait until PostgreSQL has started (or finished recovery), then check again');
    default:
      return fail(text(message), 'correct source.url (host, port, user, password, database, sslmode)');
  }
}

/** The configured slot: missing (created at start), unusable, lost, busy or retaining a lot. */
export function slotChecks(facts: PostgresReached, slotName: string): CheckLine[] {
  const { slot, role, server } = facts;
  const name = `slot "${slotName}"`;
  const drop = `SELECT pg_drop_replication_slot(${quoteLiteral(slotName)});`;
  if (slot === null) {
    if (role.superuser || role.replication || facts.replication.ok) {
      return [ok(`${name} does not exist yet: the worker creates it at start (pgoutput)`)];
    }
    return [
      fail(
        `${name} does not exist, and role "${role.name}" may not create it without REPLICATION`,
        `ALTER ROLE ${role.sql} REPLICATION;  (as a superuser)`,
      ),
    ];
  }
  if (slot.type !== 'logical' || slot.plugin !== 'pgoutput') {
    const plugin = slot.plugin === null ? '' : ` with plugin "${slot.plugin}"`;
    return [
      fail(
        `${name} is a ${slot.type} slot${plugin}, not a logical pgoutput slot`,
        `choose another source.slot, or drop this one if nothing uses it: ${drop}`,
      ),
    ];
  }
  if (slot.database !== server.database) {
    return [
      fail(
        `${name} belongs to database "${slot.database}", not "${server.database}"`,
        'choose another source.slot: slot names are shared by every database of the server',
      ),
    ];
  }
  if (slot.walStatus === 'lost') {
    return [
      fail(
        `${name} has lost WAL it needed (wal_status lost): changes were removed before the worker read them, ` +
          'so cached entries may be stale',
        `${drop}\nstart the worker: it creates a new slot at the current position\n` +
          'then flush the cached entries of the mapped tables: changes in the gap were never invalidated',
      ),
    ];
  }

  const retained = slot.retainedBytes === null ? 'retained WAL unknown' : `retains ${formatBytes(slot.retainedBytes)} of WAL`;
  const status = slot.walStatus === null ? '' : ` (wal_status ${slot.walStatus})`;
  const lines = [ok(`${name}: pgoutput, database "${slot.database}", ${slot.active ? 'active' : 'inactive'}, ${retained}${status}`)];
  if (slot.active) {
    const by = [
      slot.activePid === null ? null : `pid ${slot.activePid}`,
      slot.activeApplication ? `application "${slot.activeApplication}"` : null,
      slot.activeClient === null ? null : `client ${slot.activeClient}`,
    ].filter((s) => s !== null);
    lines.push(
      warn(
        `${name} is being streamed${by.length > 0 ? ` by ${by.join(', ')}` : ''}: a worker started now waits until ` +
          'that process lets go (expected when this is your running worker)',
        slot.activePid === null
          ? undefined
          : `if nothing should stream it, end that process: SELECT pg_terminate_backend(${slot.activePid});`,
      ),
    );
  }
  if (slot.walStatus === 'extended') {
    lines.push(
      warn(
        `${name} holds back more WAL than max_wal_size (wal_status extended)`,
        `keep the worker running so the slot advances, or drop the slot if it is abandoned: ${drop}`,
      ),
    );
  } else if (slot.walStatus === 'unreserved') {
    lines.push(
      warn(
        `${name} is about to lose WAL it needs (wal_status unreserved): the next checkpoint may remove it`,
        'start the worker now so that the slot advances',
      ),
    );
  }
  return lines;
}
