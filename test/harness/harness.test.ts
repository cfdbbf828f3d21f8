import { describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { freePort } from './free-port.js';
import { servicesMissing, sharedPostgres, sharedRedis, uniqueName } from './services.js';
import { waitFor } from './wait-for.js';

describe('harness utilities', () => {
  it('freePort returns a bindable port', async () => {
    const port = await freePort();
    expect(port).toBeGreaterThan(0);
    expect(port).toBeLessThan(65_536);
  });

  it('waitFor returns the first truthy value and times out with the message', async () => {
    let calls = 0;
    await expect(waitFor(() => ++calls >= 3 && calls, { intervalMs: 1 })).resolves.toBe(3);
    await expect(waitFor(() => false, { timeoutMs: 30, intervalMs: 5, message: 'the impossible' })).rejects.toThrow(
      /timed out after 30 ms waiting for the impossible/,
    );
  });

  it('uniqueName gives distinct, valid slot names', () => {
    const a = uniqueName('Slot-For Test!');
    const b = uniqueName('Slot-For Test!');
    expect(a).not.toBe(b);
    expect(a).toMatch(/^[a-z_][a-z0-9_]{0,62}$/);
    expect(uniqueName('x'.repeat(100)).length).toBeLessThanOrEqual(63);
  });
});

describe.skipIf(servicesMissing('postgres'))('PostgresServer', () => {
  it('runs with wal_level=logical and supports pgoutput slots', async () => {
    const pg = await sharedPostgres();
    expect(await pg.query('SHOW wal_level')).toEqual([{ wal_level: 'logical' }]);
    expect(await pg.query('SHOW wal_sender_timeout')).toEqual([{ wal_sender_timeout: '1min' }]);

    const database = uniqueName('db');
    await pg.createDatabase(database);
    const slot = uniqueName('slot');
    await pg.query(`SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, [slot], database);
    const slots = await pg.query<{ plugin: string; database: string }>(
      'SELECT plugin, database FROM pg_replication_slots WHERE slot_name = $1',
      [slot],
    );
    expect(slots).toEqual([{ plugin: 'pgoutput', database }]);
    await pg.query('SELECT pg_drop_replication_slot($1)', [slot], database);
    expect(await pg.query('SELECT 1 FROM pg_replication_slots WHERE slot_name = $1', [slot])).toEqual([]);
  });

  it('survives kill -9 and restarts on the same port with its data', async () => {
    const pg = await sharedPostgres();
    const database = uniqueName('db');
    await pg.createDatabase(database);
    await pg.query('CREATE TABLE t (id int PRIMARY KEY)', [], database);
    await pg.query('INSERT INTO t VALUES (1), (2)', [], database);
    const port = pg.port;

    await pg.kill();
    expect(pg.running).toBe(false);
    await expect(pg.query('SELECT 1')).rejects.toThrow();

    await pg.restart();
    expect(pg.port).toBe(port);
    expect(await pg.query('SELECT count(*)::int AS n FROM t', [], database)).toEqual([{ n: 2 }]);

    await pg.stop('fast');
    await pg.restart();
    expect(await pg.query('SELECT 1 AS one')).toEqual([{ one: 1 }]);
  });
});

describe.skipIf(servicesMissing('redis'))('RedisServer', () => {
  it('serves SET/GET, pauses, resumes, and comes back after kill -9 on the same port', async () => {
    const server = await sharedRedis();
    const prefix = uniqueName('k');
    const redis = new Redis(server.url(), { maxRetriesPerRequest: null, lazyConnect: true });
    redis.on('error', () => undefined); // expected while the server is down
    try {
      await redis.connect();
      await redis.set(`${prefix}:a`, '1');
      expect(await redis.get(`${prefix}:a`)).toBe('1');

      await server.pause();
      const late = redis.get(`${prefix}:a`);
      let answered = false;
      void late.then(() => (answered = true));
      // A paused server holds the reply back; it comes once the server resumes.
      await new Promise((resolve) => setTimeout(resolve, 200));
      expect(answered).toBe(false);
      await server.resume();
      expect(await late).toBe('1');

      const port = server.port;
      await server.kill();
      expect(server.running).toBe(false);
      await server.restart();
      expect(server.port).toBe(port);
      // No persistence: the restarted server is empty. The client reconnects by itself.
      await waitFor(async () => (await redis.ping()) === 'PONG', { message: 'client to reconnect' });
      expect(await redis.get(`${prefix}:a`)).toBeNull();
    } finally {
      redis.disconnect();
    }
  });
});
