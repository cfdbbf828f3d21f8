import { afterEach, describe, expect, it } from 'vitest';
import { compileRules } from '../../src/core/rules.js';
import { silentLogger } from '../../src/log.js';
import { PostgresSource } from '../../src/sources/postgres/postgres-source.js';
import type { SourceBatch } from '../../src/ports/source.js';
import { createTestDatabase, servicesMissing, sharedPostgres, uniqueName } from '../harness/services.js';
import { waitFor } from '../harness/wait-for.js';

/**
 * Wide rows: the buffer between the slot and the worker is bounded in bytes too, so a transaction of
 * large rows cannot fill memory before the changes-count bound is anywhere near.
 */
let source: PostgresSource | undefined;
afterEach(async () => {
  await source?.close();
  source = undefined;
});

describe.skipIf(servicesMissing('postgres'))('a transaction of wide rows', () => {
  it('stops reading at the byte bound, hands over batches within the batch bound, and loses nothing', { timeout: 60_000 }, async () => {
    const pg = await sharedPostgres();
    const db = await createTestDatabase('wide');
    await pg.query('CREATE TABLE public.docs (id int PRIMARY KEY, body text NOT NULL)', [], db.name);
    const { rules, problems } = compileRules([{ file: 'docs.yaml', rules: [{ table: 'public.docs', invalidate: ['doc:{id}'] }] }]);
    expect(problems).toEqual([]);
    const ROW = 200_000;
    source = new PostgresSource({
      url: db.url,
      slot: uniqueName('slot'),
      publication: uniqueName('pub'),
      rules,
      replicaIdentity: 'check',
      heartbeatSeconds: 0,
      maxWaitMs: 0,
      highWaterChanges: 10_000,
      highWaterBytes: 1_000_000,
      maxBatchBytes: 500_000,
      logger: silentLogger(),
    });
    await source.start();
    await waitFor(() => source!.status().connected, { message: 'streaming' });
    // 40 rows of 200 kB in one transaction, 8 MB in all; incompressible, so TOAST cannot shrink them.
    await pg.query(
      `INSERT INTO public.docs SELECT i, (SELECT string_agg(md5(random()::text || i || j), '') FROM generate_series(1, $1::int / 32) AS j) FROM generate_series(1, 40) AS i`,
      [ROW],
      db.name,
    );
    await waitFor(() => source!.status().buffered >= 5, { message: 'the first changes buffered' });
    // The worker takes nothing for a while: the source must stop reading at about 1 MB.
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    const buffered = source.status().buffered;
    expect(buffered).toBeGreaterThanOrEqual(5);
    expect(buffered).toBeLessThanOrEqual(7);

    const ids: string[] = [];
    let last: SourceBatch | null = null;
    while (ids.length < 40) {
      const batch = await source.next(5_000);
      expect(batch).not.toBeNull();
      // 500 kB per batch: two of these rows.
      expect(batch!.changes.length).toBeGreaterThanOrEqual(1);
      expect(batch!.changes.length).toBeLessThanOrEqual(2);
      for (const change of batch!.changes) {
        expect(change.after!['body']!.length).toBe(ROW);
        ids.push(change.after!['id']!);
      }
      await source.acknowledge(batch!);
      last = batch;
    }
    expect(ids).toEqual(Array.from({ length: 40 }, (_, i) => String(i + 1)));
    // The transaction's commit came with its last change.
    expect(last!.position).not.toBeNull();
  });
});
