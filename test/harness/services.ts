// What integration tests use: one Postgres, one Redis and one MariaDB per test file (vitest runs each file
// in its own worker), started on first use and destroyed after the file's last test, plus unique names so
// tests in a file never share a database, slot, publication or key prefix.
import { randomBytes } from 'node:crypto';
import { afterAll } from 'vitest';
import { backendFor, inContainer } from './backend.js';
import { isCI } from './ci.js';
import { findPostgresBinDir, missingPostgresMessage } from './postgres-binaries.js';
import { PostgresServer, type PostgresServerOptions } from './postgres.js';
import { findRedisServer, missingRedisMessage } from './redis-binaries.js';
import { missingMemcachedMessage } from './memcached-binaries.js';
import { findMariaDbBinaries, missingMariaDbMessage } from './mariadb-binaries.js';
import type { MariaDbServer, MariaDbServerOptions } from './mariadb.js';
import { RedisServer } from './redis.js';

/**
 * 'postgres' and 'redis': a server, from binaries or in a container (server-backend.ts).
 * 'postgres-binaries' and 'redis-binaries': tests that need the binaries themselves (a standby from a base
 * backup, TLS files in the data dir, a Redis Cluster or Sentinel on ports of their own).
 * 'mariadb': a MariaDB server, from binaries only (mariadb.ts), that Kafka Connect can reach: not where
 * Kafka runs in containers.
 */
export type ServiceKind = 'postgres' | 'redis' | 'memcached' | 'mariadb' | 'postgres-binaries' | 'redis-binaries';

export { isCI } from './ci.js';

/**
 * Why tests needing these services cannot run here, or false when they can. Always false under CI, so
 * that there a missing binary fails the test (with the message saying what to install) instead of
 * skipping it. Use as `describe.skipIf(servicesMissing('postgres', 'redis'))(...)`.
 */
export function servicesMissing(...kinds: ServiceKind[]): string | false {
  if (isCI()) return false;
  const reasons = kinds.map(missingReason).filter((reason): reason is string => reason !== undefined);
  if (reasons.length === 0) return false;
  const reason = reasons.join(' ');
  console.warn(`skipping: ${reason}`);
  return reason;
}

function missingReason(kind: ServiceKind): string | undefined {
  switch (kind) {
    case 'postgres':
    case 'redis': {
      const choice = backendFor(kind);
      if (choice.backend !== undefined) return undefined;
      return `${kind === 'postgres' ? missingPostgresMessage() : missingRedisMessage()} Containers: ${choice.reason}.`;
    }
    case 'memcached': {
      const choice = backendFor('memcached');
      return choice.backend !== undefined ? undefined : `${missingMemcachedMessage()} Containers: ${choice.reason}.`;
    }
    case 'mariadb':
      if (findMariaDbBinaries() === undefined) return missingMariaDbMessage();
      // MariaDB never runs in a container: a Kafka Connect container could not reach one on this machine's
      // loopback, nor is there a MariaDB among the containers it can reach.
      return inContainer('kafka')
        ? 'the MariaDB tests need Kafka Connect from binaries (java and the Kafka jars), and Kafka runs in containers here, where Connect cannot reach a MariaDB of this machine'
        : undefined;
    case 'postgres-binaries':
      if (findPostgresBinDir() === undefined) return `this test needs the PostgreSQL binaries themselves: ${missingPostgresMessage()}`;
      return inContainer('postgres') ? 'this test needs the PostgreSQL binaries themselves, and Postgres runs in containers here' : undefined;
    case 'redis-binaries':
      if (findRedisServer() === undefined) return `this test needs redis-server itself: ${missingRedisMessage()}`;
      return inContainer('redis') ? 'this test needs redis-server itself, and Redis runs in containers here' : undefined;
  }
}

let postgres: Promise<PostgresServer> | undefined;
let redis: Promise<RedisServer> | undefined;
let mariadb: Promise<MariaDbServer> | undefined;

/**
 * The test file's Postgres, started on the first call. Options count only on that first call. A test
 * that stops or kills it should restart it before it ends, or use its own PostgresServer.start().
 */
export async function sharedPostgres(options?: PostgresServerOptions): Promise<PostgresServer> {
  postgres ??= PostgresServer.start(options);
  return await postgres;
}

/** The test file's Redis, started on the first call. */
export async function sharedRedis(): Promise<RedisServer> {
  redis ??= RedisServer.start();
  return await redis;
}

/**
 * The test file's MariaDB, started on the first call (options count only then). A test that stops or kills
 * it should restart it before it ends, or use its own MariaDbServer.start().
 */
export async function sharedMariaDb(options?: MariaDbServerOptions): Promise<MariaDbServer> {
  // Imported on first use: test files without MariaDB do not load mysql2.
  mariadb ??= import('./mariadb.js').then(async ({ MariaDbServer }) => await MariaDbServer.start(options));
  return await mariadb;
}

/** A new database on the file's MariaDB, named uniquely; returns its name and URL. */
export async function createMariaDbTestDatabase(prefix = 'db'): Promise<{ name: string; url: string }> {
  const server = await sharedMariaDb();
  const name = uniqueName(prefix);
  return { name, url: await server.createDatabase(name) };
}

/** A new database on the file's Postgres, named uniquely; returns its name and connection string. */
export async function createTestDatabase(prefix = 'db'): Promise<{ name: string; url: string }> {
  const server = await sharedPostgres();
  const name = uniqueName(prefix);
  return { name, url: await server.createDatabase(name) };
}

let counter = 0;

/**
 * A name unique across test files and runs, valid as a Postgres or MariaDB identifier, a replication slot
 * name (lower-case letters, digits and underscores, at most 63 bytes), a Kafka topic prefix and a Redis
 * key prefix.
 */
export function uniqueName(prefix = 't'): string {
  counter += 1;
  const suffix = `${process.pid.toString(36)}_${counter.toString(36)}_${randomBytes(3).toString('hex')}`;
  let clean = prefix.toLowerCase().replace(/[^a-z0-9_]+/g, '_').replace(/^[^a-z_]+/, '');
  if (clean === '') clean = 't';
  return `${clean.slice(0, 63 - suffix.length - 1)}_${suffix}`;
}

async function destroyShared(): Promise<void> {
  const started = [postgres, redis, mariadb];
  postgres = undefined;
  redis = undefined;
  mariadb = undefined;
  const results = await Promise.allSettled(
    started.map(async (server) => {
      if (server === undefined) return;
      // A start that failed has cleaned up after itself; its error was reported to the test that awaited it.
      const instance = await server.catch(() => undefined);
      await instance?.destroy();
    }),
  );
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed !== undefined) throw failed.reason;
}

// Registered when a test file imports this module, so it belongs to that file's root suite and runs after
// its last test. Each file gets a fresh module registry (vitest's default isolation), so a fresh hook too.
afterAll(destroyShared, 120_000);
