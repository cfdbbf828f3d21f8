// Authentication and TLS for the throwaway servers, for the security tests: a self-signed certificate
// made with openssl, a PostgreSQL whose pg_hba.conf asks chosen roles for a SCRAM password (and some
// of them for TLS too), and a Redis with a default-user password, ACL users and a TLS port.
//
// The harness servers start as they always do (trust auth, no TLS, so their own readiness checks
// work) and are then reconfigured and reloaded: nothing here changes how PostgresServer or
// RedisServer work for other tests.
import { isCI } from './ci.js';
import { execFile } from 'node:child_process';
import { chownSync, mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Redis } from 'ioredis';
import pg from 'pg';
import { freePort } from './free-port.js';
import { quoteIdent, type PostgresServer } from './postgres.js';
import { RedisServer } from './redis.js';
import { findOnPath } from './server-process.js';
import { waitFor } from './wait-for.js';

const execFileAsync = promisify(execFile);

export interface Certificate {
  certFile: string;
  keyFile: string;
  /** PEM text of the certificate: also its own CA, since it is self-signed. */
  certPem: string;
  keyPem: string;
}

/** Why the TLS tests cannot run, or false. Always false under CI: there a missing openssl fails them. */
export function opensslMissing(): string | false {
  if (isCI()) return false;
  if (findOnPath('openssl') !== undefined) return false;
  const reason = 'openssl not found on PATH (Debian: apt-get install openssl)';
  console.warn(`skipping: ${reason}`);
  return reason;
}

/**
 * A self-signed certificate for localhost and 127.0.0.1 (so that clients that verify the host name
 * accept it once they trust it), valid for a day, in a new temp dir.
 */
export async function selfSignedCertificate(commonName = 'localhost'): Promise<Certificate> {
  const dir = mkdtempSync(join(tmpdir(), 'cdc-cert-'));
  const certFile = join(dir, 'server.crt');
  const keyFile = join(dir, 'server.key');
  await execFileAsync('openssl', [
    'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-sha256', '-days', '1',
    '-keyout', keyFile, '-out', certFile,
    '-subj', `/CN=${commonName}`,
    '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1',
  ]);
  return { certFile, keyFile, certPem: readFileSync(certFile, 'utf8'), keyPem: readFileSync(keyFile, 'utf8') };
}

export interface PostgresSecurityOptions {
  /** Turns ssl on with this certificate (written into the data dir as server.crt / server.key). */
  certificate?: Certificate;
  /** Roles that must connect over TLS: plain connections are rejected for them (hostnossl ... reject). */
  tlsOnlyRoles?: string[];
}

/**
 * Rewrites pg_hba.conf so that the superuser `postgres` keeps trust on 127.0.0.1 (the harness and the
 * tests connect as it without a password) and every other role must give a SCRAM password; with a
 * certificate, turns ssl on. Reloads the configuration and waits until it is in effect.
 */
export async function securePostgres(server: PostgresServer, options: PostgresSecurityOptions = {}): Promise<void> {
  const owner = statSync(server.dataDir);
  const write = (name: string, text: string) => {
    const file = join(server.dataDir, name);
    writeFileSync(file, text, { mode: 0o600 });
    chownSync(file, owner.uid, owner.gid);
  };
  const lines = [
    '# test harness (secure-services): trust for the superuser, SCRAM passwords for everyone else',
    'local all         all                       trust',
    'local replication all                       trust',
    'host  all         postgres  127.0.0.1/32   trust',
    'host  replication postgres  127.0.0.1/32   trust',
  ];
  for (const role of options.tlsOnlyRoles ?? []) {
    lines.push(`hostnossl all         ${role}  127.0.0.1/32  reject`, `hostnossl replication ${role}  127.0.0.1/32  reject`);
  }
  lines.push('host  all         all  127.0.0.1/32  scram-sha-256', 'host  replication all  127.0.0.1/32  scram-sha-256', '');
  write('pg_hba.conf', lines.join('\n'));
  await server.query(`ALTER SYSTEM SET password_encryption = 'scram-sha-256'`);
  if (options.certificate !== undefined) {
    write('server.crt', options.certificate.certPem);
    write('server.key', options.certificate.keyPem);
    await server.query(`ALTER SYSTEM SET ssl_cert_file = 'server.crt'`);
    await server.query(`ALTER SYSTEM SET ssl_key_file = 'server.key'`);
    await server.query(`ALTER SYSTEM SET ssl = on`);
  }
  await server.query('SELECT pg_reload_conf()');
  // The reload is a signal: wait until a new backend sees the new settings.
  await waitFor(
    async () => {
      const [row] = await server.query<{ ssl: string; hba: number }>(
        `SELECT current_setting('ssl') AS ssl,
                (SELECT count(*)::int FROM pg_hba_file_rules WHERE auth_method = 'scram-sha-256') AS hba`,
      );
      return row !== undefined && row.hba > 0 && (options.certificate === undefined || row.ssl === 'on');
    },
    { timeoutMs: 10_000, intervalMs: 50, message: 'postgres to reload pg_hba.conf and ssl' },
  );
}

/** Creates a login role with a password (stored as SCRAM), optionally with REPLICATION. */
export async function createPasswordRole(
  server: PostgresServer,
  name: string,
  password: string,
  options: { replication?: boolean } = {},
): Promise<void> {
  const client = new pg.Client({ connectionString: server.url() });
  await client.connect();
  try {
    // Literal, not a parameter: utility statements take none. The password is escaped by pg.
    const literal = client.escapeLiteral(password);
    await client.query(
      `SET password_encryption = 'scram-sha-256'; CREATE ROLE ${quoteIdent(name)} LOGIN ${options.replication ? 'REPLICATION' : ''} PASSWORD ${literal}`,
    );
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** A connection string for a role with a password, both percent-encoded. */
export function passwordUrl(server: PostgresServer, user: string, password: string, database: string, query = ''): string {
  const q = query === '' ? '' : `?${query}`;
  return `postgres://${encodeURIComponent(user)}:${encodeURIComponent(password)}@127.0.0.1:${server.port}/${encodeURIComponent(database)}${q}`;
}

export interface SecureRedis {
  server: RedisServer;
  /** The TLS port, when started with a certificate. */
  tlsPort: number | undefined;
  /** redis:// (or rediss:// on the TLS port) URL with credentials. */
  url(options?: { user?: string; password?: string; tls?: boolean }): string;
  destroy(): Promise<void>;
}

/**
 * A Redis of its own with a TLS port (when given a certificate; clients are not asked for one), then
 * ACL users and a password for the default user. The plain port stays open so that the harness's
 * readiness PING works at start; the password is set after it.
 */
export async function startSecureRedis(options: {
  certificate?: Certificate;
  defaultPassword?: string;
  users?: Array<{ name: string; password: string }>;
}): Promise<SecureRedis> {
  const tlsPort = options.certificate === undefined ? undefined : await freePort();
  const args =
    options.certificate === undefined || tlsPort === undefined
      ? []
      : [
          '--tls-port', String(tlsPort),
          '--tls-cert-file', options.certificate.certFile,
          '--tls-key-file', options.certificate.keyFile,
          '--tls-ca-cert-file', options.certificate.certFile,
          '--tls-auth-clients', 'no',
        ];
  const server = await RedisServer.start({ args });
  const admin = new Redis(server.url(), { lazyConnect: true, maxRetriesPerRequest: 1 });
  try {
    await admin.connect();
    for (const user of options.users ?? []) {
      await admin.call('ACL', 'SETUSER', user.name, 'reset', 'on', `>${user.password}`, '~*', '&*', '+@all');
    }
    if (options.defaultPassword !== undefined) await admin.call('CONFIG', 'SET', 'requirepass', options.defaultPassword);
  } finally {
    admin.disconnect();
  }
  return {
    server,
    tlsPort,
    url({ user, password, tls } = {}) {
      const auth =
        password === undefined ? '' : `${user === undefined ? '' : encodeURIComponent(user)}:${encodeURIComponent(password)}@`;
      const port = tls === true ? tlsPort : server.port;
      if (port === undefined) throw new Error('this Redis has no TLS port');
      return `${tls === true ? 'rediss' : 'redis'}://${auth}127.0.0.1:${port}`;
    },
    destroy: () => server.destroy(),
  };
}
