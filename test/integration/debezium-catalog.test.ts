// Replica identities and column types read from the catalog for the Debezium source (source.url):
// per table, per leaf partition of a partitioned table, and again after ALTER TABLE ... REPLICA
// IDENTITY while the worker runs, with the weaker identity for changes between the two reads.
import { describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/log.js';
import { PostgresCatalog } from '../../src/sources/debezium/catalog.js';
import { createTestDatabase, servicesMissing, sharedPostgres } from '../harness/services.js';

const noKeepAlive = async () => undefined;

describe.skipIf(servicesMissing('postgres'))('the debezium catalog', () => {
  it('reads each mapped table\'s identity, per leaf partition, and again once an event is newer than the read', async () => {
    const pg = await sharedPostgres();
    const db = await createTestDatabase('dbzcat');
    const sql = (text: string) => pg.query(text, [], db.name);
    await sql(`
      CREATE TABLE full_t (id int PRIMARY KEY, email text, price numeric(12,2), at timestamp(3));
      ALTER TABLE full_t REPLICA IDENTITY FULL;
      CREATE TABLE default_t (a int, b text, c text, PRIMARY KEY (b, a));
      CREATE TABLE index_t (id int PRIMARY KEY, sku text NOT NULL);
      CREATE UNIQUE INDEX index_t_sku ON index_t (sku);
      ALTER TABLE index_t REPLICA IDENTITY USING INDEX index_t_sku;
      CREATE TABLE nothing_t (id int);
      ALTER TABLE nothing_t REPLICA IDENTITY NOTHING;
      CREATE TABLE parted (id int, region text, note text, PRIMARY KEY (id, region)) PARTITION BY LIST (region);
      CREATE TABLE parted_eu PARTITION OF parted FOR VALUES IN ('eu');
      CREATE TABLE parted_us PARTITION OF parted FOR VALUES IN ('us');
      ALTER TABLE parted_eu REPLICA IDENTITY FULL;
      ALTER TABLE parted_us REPLICA IDENTITY FULL;
      CREATE TABLE parted_mixed (id int, region text, PRIMARY KEY (id, region)) PARTITION BY LIST (region);
      CREATE TABLE parted_mixed_eu PARTITION OF parted_mixed FOR VALUES IN ('eu');
      CREATE TABLE parted_mixed_us PARTITION OF parted_mixed FOR VALUES IN ('us');
      ALTER TABLE parted_mixed_eu REPLICA IDENTITY FULL;
    `);
    const names = ['full_t', 'default_t', 'index_t', 'nothing_t', 'parted', 'parted_mixed', 'missing_t'];
    const catalog = new PostgresCatalog({ url: db.url, tables: names.map((t) => ['public', t] as const), logger: silentLogger() });
    try {
      await catalog.start();
      const at = (table: string, lsn: bigint | null = 1n) => catalog.info({ schema: 'public', table, lsn });
      expect(at('full_t').identity).toEqual({ kind: 'full' });
      expect(at('default_t').identity).toEqual({ kind: 'columns', columns: ['b', 'a'] });
      expect(at('index_t').identity).toEqual({ kind: 'columns', columns: ['sku'] });
      expect(at('nothing_t').identity).toEqual({ kind: 'columns', columns: [] });
      expect(at('parted').identity).toEqual({ kind: 'full' });
      // One leaf at DEFAULT: only the primary key is real in the old rows of the whole table.
      expect(at('parted_mixed').identity).toEqual({ kind: 'columns', columns: ['id', 'region'] });
      expect(at('missing_t').identity).toEqual({ kind: 'message-key' });
      expect(at('full_t').columns?.get('price')).toEqual({ type: 'numeric', precision: 12, scale: 2 });
      expect(at('full_t').columns?.get('at')).toEqual({ type: 'timestamp without time zone', precision: 3, scale: null });

      const lsnNow = async () => BigInt((await sql(`SELECT (pg_current_wal_insert_lsn() - '0/0')::text AS n`))[0]!['n'] as string);
      const before = await lsnNow();
      await sql('ALTER TABLE full_t REPLICA IDENTITY DEFAULT');
      await sql('INSERT INTO default_t VALUES (1, \'x\', \'y\')');
      const after = await lsnNow();
      // An event from before the last read is answered from it; a newer one makes the catalog read again.
      await catalog.prepare([{ schema: 'public', table: 'full_t', lsn: 1n }], noKeepAlive);
      expect(at('full_t', after).identity).toEqual({ kind: 'full' });
      await catalog.prepare([{ schema: 'public', table: 'full_t', lsn: after }], noKeepAlive);
      expect(at('full_t', after + 1n).identity).toEqual({ kind: 'columns', columns: ['id'] });
      // A change made before the first read that showed FULL was in force keeps it.
      expect(at('full_t', 1n).identity).toEqual({ kind: 'full' });
      // Between the two reads, nobody knows which identity was in force: the weaker one.
      expect(at('full_t', before + 1n).identity).toEqual({ kind: 'columns', columns: ['id'] });
    } finally {
      await catalog.close();
    }
  });

  it('warns about a mapped table missing from the database with its first PostgreSQL event, not at start (a MariaDB table is in none)', async () => {
    const db = await createTestDatabase('dbzmiss');
    await (await sharedPostgres()).query('CREATE TABLE public.here (id int PRIMARY KEY)', [], db.name);
    const lines: string[] = [];
    const logger: Record<string, unknown> = { ...silentLogger(), warn: (fields: { table: string }, message: string) => lines.push(`${fields.table}: ${message}`) };
    logger['child'] = () => logger;
    const catalog = new PostgresCatalog({ url: db.url, tables: [['public', 'here'], ['public', 'gone'], ['shop', 'users']], logger: logger as never });
    try {
      await catalog.start();
      expect(lines).toEqual([]);
      expect(catalog.info({ schema: 'public', table: 'here', lsn: null }).identity).toEqual({ kind: 'columns', columns: ['id'] });
      for (let i = 0; i < 2; i++) expect(catalog.info({ schema: 'public', table: 'gone', lsn: null }).identity).toEqual({ kind: 'message-key' });
      expect(lines).toEqual(['public.gone: mapped table not found in the database: old rows of its changes are read as their message key only']);
    } finally {
      await catalog.close();
    }
  });
});
