import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Value } from '../../src/core/change.js';
import type { LookupRequest, LookupResult } from '../../src/core/lookup.js';
import { silentLogger } from '../../src/log.js';
import { MAX_LISTS_PER_STATEMENT, PostgresLookupRunner } from '../../src/lookups/lookup-runner.js';
import { createTestDatabase, servicesMissing, sharedPostgres } from '../harness/services.js';
import { createScenario, type Scenario } from './scenario.js';

const SCHEMA = `
  CREATE TABLE public.users (id int PRIMARY KEY, name text NOT NULL, email text NOT NULL);
  CREATE TABLE public.comments (id int PRIMARY KEY, user_id int NOT NULL REFERENCES users, content text NOT NULL);
  ALTER TABLE public.comments REPLICA IDENTITY FULL;
  CREATE TABLE public.follows (user_id int NOT NULL, follower_id int NOT NULL, PRIMARY KEY (user_id, follower_id));
  INSERT INTO users VALUES (1, 'Ann', 'a@x.io'), (2, 'Bob', 'b@x.io'), (3, 'Cy', 'c@x.io'), (4, 'Di', 'd@x.io');
  INSERT INTO follows VALUES (1, 3), (1, 4);
`;

const RULES = `
  - table: comments
    lookup:
      author:
        sql: "SELECT name, email FROM public.users WHERE id = $1"
        params: [user_id]
      followers:
        sql: "SELECT follower_id FROM public.follows WHERE user_id = $1 ORDER BY follower_id"
        params: [user_id]
    invalidate:
      - "comment:{id}"
      - "comments:name={author.name}:email={author.email}"
      - "feed:{followers.follower_id}"
`;

let scenario: Scenario | undefined;
afterEach(async () => {
  await scenario?.cleanup();
  scenario = undefined;
});

describe.skipIf(servicesMissing('postgres', 'redis'))('lookups against the database', () => {
  it("a comment insert invalidates its author's query key and every follower's feed", async () => {
    scenario = await createScenario({ schema: SCHEMA, rules: RULES });
    const s = scenario;
    await s.startWorker();
    await s.seed('comment:10', 'comments:name=Ann:email=a@x.io', 'comments:name=Bob:email=b@x.io', 'feed:3', 'feed:4', 'feed:2');
    await s.sql(`INSERT INTO comments VALUES (10, 1, 'hi')`);
    await s.barrier();
    expect(await s.exists('comment:10')).toBe(false);
    expect(await s.exists('comments:name=Ann:email=a@x.io')).toBe(false);
    expect(await s.exists('feed:3')).toBe(false);
    expect(await s.exists('feed:4')).toBe(false);
    expect(await s.exists('comments:name=Bob:email=b@x.io')).toBe(true);
    expect(await s.exists('feed:2')).toBe(true);
  });

  it("a comment moved to another user invalidates both authors' keys", async () => {
    scenario = await createScenario({ schema: SCHEMA, rules: RULES });
    const s = scenario;
    await s.sql(`INSERT INTO comments VALUES (10, 1, 'hi')`);
    await s.startWorker();
    await s.seed('comments:name=Ann:email=a@x.io', 'comments:name=Bob:email=b@x.io');
    await s.sql(`UPDATE comments SET user_id = 2 WHERE id = 10`);
    await s.barrier();
    expect(await s.exists('comments:name=Ann:email=a@x.io')).toBe(false);
    expect(await s.exists('comments:name=Bob:email=b@x.io')).toBe(false);
  });

  it('a lookup that keeps failing runs the fallback and is counted', async () => {
    scenario = await createScenario({
      schema: SCHEMA,
      rules: `
  - table: comments
    lookup:
      author:
        sql: "SELECT name FROM public.no_such_table WHERE id = $1"
        params: [user_id]
        retries: 1
    invalidate: ["comments:name={author.name}"]
    fallback:
      bump: ["comments:version"]
`,
    });
    const s = scenario;
    const { stats } = await s.startWorker();
    await s.sql(`INSERT INTO comments VALUES (11, 1, 'x')`);
    await s.barrier();
    expect(await s.get('comments:version')).toMatch(/^\d+$/);
    expect(stats.fallbacks).toBe(1);
  });

  it('a lookup over its timeout is cancelled by the server and counts as failed', async () => {
    scenario = await createScenario({
      schema: SCHEMA,
      rules: `
  - table: comments
    lookup:
      slow:
        sql: "SELECT name FROM public.users, pg_sleep(5) WHERE id = $1"
        params: [user_id]
        timeoutMs: 200
        retries: 0
    invalidate: ["comments:name={slow.name}"]
`,
    });
    const s = scenario;
    const { stats } = await s.startWorker();
    const started = Date.now();
    await s.sql(`INSERT INTO comments VALUES (12, 1, 'x')`);
    await s.barrier();
    expect(Date.now() - started).toBeLessThan(4_000);
    const letters = await s.deadLetters();
    expect(letters).toHaveLength(1);
    expect(letters[0]).toMatchObject({ reason: 'lookup_failed', table: 'public.comments' });
    expect(letters[0]!['detail']).toContain('statement timeout');
    expect(stats.deadLetters).toBe(1);
  });
});

describe.skipIf(servicesMissing('postgres', 'redis'))('lookups: many changes, many parameter lists', () => {
  it("an update moving 100 comments invalidates the old and the new author's keys, and no other", async () => {
    scenario = await createScenario({
      schema: `
        CREATE TABLE public.users (id int PRIMARY KEY, name text NOT NULL);
        CREATE TABLE public.comments (id int PRIMARY KEY, user_id int NOT NULL);
        ALTER TABLE public.comments REPLICA IDENTITY FULL;
        INSERT INTO users SELECT g, 'user' || g FROM generate_series(1, 200) g;
        INSERT INTO comments SELECT g, g FROM generate_series(1, 150) g;
      `,
      rules: `
  - table: comments
    lookup:
      author:
        sql: "SELECT name FROM public.users WHERE id = $1"
        params: [user_id]
    invalidate: ["u:{author.name}"]
`,
    });
    const s = scenario;
    await s.startWorker();
    await s.seed(...Array.from({ length: 200 }, (_, i) => `u:user${i + 1}`));
    // One transaction: old authors 1..100, new authors 26..125.
    await s.sql('UPDATE comments SET user_id = user_id + 25 WHERE id <= 100');
    await s.barrier();
    const left = [];
    for (let id = 1; id <= 200; id++) if (await s.exists(`u:user${id}`)) left.push(id);
    expect(left).toEqual(Array.from({ length: 75 }, (_, i) => 126 + i));
  });
});

// The lookup runner alone: the requests of one lookup run as one statement, and each gets exactly
// what it gets run alone (the reference: runner.run([request]), the form a lone request always takes).
const PEOPLE = `
  CREATE TABLE people (id int PRIMARY KEY, name text NOT NULL, org int, uid uuid NOT NULL, balance numeric, seen timestamptz, active boolean);
  INSERT INTO people
    SELECT g, 'p' || g, CASE WHEN g % 7 = 0 THEN NULL ELSE g % 10 END, md5(g::text)::uuid, g * 1.5,
           timestamptz '2024-01-01 00:00:00+00' + g * interval '1 hour', g % 2 = 0
    FROM generate_series(1, 500) g;
  CREATE TABLE shapes (id int PRIMARY KEY, b box NOT NULL);
  INSERT INTO shapes VALUES (1, '((0,0),(1,1))'), (2, '((0,0),(2,2))');
`;

let db: { name: string; url: string };
let runner: PostgresLookupRunner | undefined;

function newRunner(url = db.url): PostgresLookupRunner {
  runner = new PostgresLookupRunner({ url, logger: silentLogger() });
  return runner;
}

const requests = (sql: string, lists: Value[][], o: { timeoutMs?: number; retries?: number } = {}): LookupRequest[] =>
  lists.map((params) => ({ id: `${sql}\u0000${JSON.stringify(params)}`, sql, params, timeoutMs: o.timeoutMs ?? 5_000, retries: o.retries ?? 0 }));

/** Each request run alone, on a runner of its own so as not to disturb the counts. */
async function alone(reqs: readonly LookupRequest[], url = db.url): Promise<Map<string, LookupResult>> {
  const reference = new PostgresLookupRunner({ url, logger: silentLogger() });
  try {
    const out = new Map<string, LookupResult>();
    for (const r of reqs) out.set(r.id, (await reference.run([r])).get(r.id)!);
    expect(reference.statements.batched).toBe(0);
    return out;
  } finally {
    await reference.close();
  }
}

const rowsOf = (results: ReadonlyMap<string, LookupResult>, r: LookupRequest) => {
  const result = results.get(r.id)!;
  if (!result.ok) throw new Error(`${JSON.stringify(r.params)} failed: ${result.message}`);
  return result.rows;
};

describe.skipIf(servicesMissing('postgres'))('lookup runner: one statement per lookup per batch', () => {
  beforeAll(async () => {
    db = await createTestDatabase('lookups');
    await (await sharedPostgres()).query(PEOPLE, [], db.name);
  });

  afterEach(async () => {
    await runner?.close();
    runner = undefined;
  });

  it('600 parameter lists, matching two rows, one or none, map back in order from one statement', async () => {
    const r = newRunner();
    const reqs = requests(
      'SELECT id, name FROM people WHERE id = $1 OR id = $1 + 250 ORDER BY id DESC',
      Array.from({ length: 600 }, (_, i) => [String(i + 1)]),
    );
    const results = await r.run(reqs);
    expect(r.statements).toEqual({ single: 0, batched: 1 });
    expect(results).toEqual(await alone(reqs));
    expect(rowsOf(results, reqs[9]!)).toEqual([{ id: '260', name: 'p260' }, { id: '10', name: 'p10' }]);
    expect(rowsOf(results, reqs[299]!)).toEqual([{ id: '300', name: 'p300' }]);
    expect(rowsOf(results, reqs[599]!)).toEqual([]);
  });

  it(`more than ${MAX_LISTS_PER_STATEMENT} lists are split into statements of at most that many`, async () => {
    const r = newRunner();
    const reqs = requests('SELECT name FROM people WHERE id = $1', Array.from({ length: 2_500 }, (_, i) => [String(i + 1)]));
    const results = await r.run(reqs);
    expect(r.statements).toEqual({ single: 0, batched: 3 });
    expect(rowsOf(results, reqs[0]!)).toEqual([{ name: 'p1' }]);
    expect(rowsOf(results, reqs[499]!)).toEqual([{ name: 'p500' }]);
    expect(rowsOf(results, reqs[2_499]!)).toEqual([]);
  });

  it('a NULL parameter is passed as NULL: the query decides what it matches', async () => {
    const r = newRunner();
    const distinct = requests('SELECT id FROM people WHERE org IS NOT DISTINCT FROM $1 ORDER BY id LIMIT 3', [[null], ['1'], ['2']]);
    const equal = requests('SELECT id FROM people WHERE org = $1', [[null], ['3']]);
    const results = await r.run([...distinct, ...equal]);
    expect(r.statements).toEqual({ single: 0, batched: 2 });
    expect(rowsOf(results, distinct[0]!)).toEqual([{ id: '7' }, { id: '14' }, { id: '21' }]);
    expect(rowsOf(results, equal[0]!)).toEqual([]);
    expect(results).toEqual(await alone([...distinct, ...equal]));
  });

  it('uuid, numeric, timestamptz and boolean parameters; every column type back in text form', async () => {
    const r = newRunner();
    const uid = async (id: number) => (await sharedPostgres()).query<{ uid: string }>('SELECT uid::text FROM people WHERE id = $1', [id], db.name);
    const u1 = (await uid(1))[0]!.uid;
    const u2 = (await uid(2))[0]!.uid;
    const reqs = [
      ...requests('SELECT * FROM people WHERE uid = $1', [[u1], [u2.toUpperCase()], [null], ['00000000-0000-0000-0000-000000000000']]),
      ...requests('SELECT id, balance FROM people WHERE balance = $1', [['1.5'], ['3.0'], ['4.50'], ['0']]),
      ...requests('SELECT id, seen FROM people WHERE seen = $1', [['2024-01-01 01:00:00+00'], ['2024-01-01T02:00:00Z'], ['2024-01-01 05:00:00+02']]),
      ...requests('SELECT count(*) AS n, bool_and(active) AS all_active FROM people WHERE active = $1 AND org = $2', [['true', '2'], ['f', '1'], ['yes', '3']]),
    ];
    const results = await r.run(reqs);
    expect(r.statements).toEqual({ single: 0, batched: 4 });
    expect(results).toEqual(await alone(reqs));
    expect(rowsOf(results, reqs[0]!)).toEqual([
      { id: '1', name: 'p1', org: '1', uid: u1, balance: '1.5', seen: expect.stringMatching(/^2024-01-01 /), active: 'false' },
    ]);
    expect(rowsOf(results, reqs[1]!)[0]!['id']).toBe('2');
    expect(rowsOf(results, reqs[5]!)).toEqual([{ id: '2', balance: '3.0' }]);
    expect(rowsOf(results, reqs[10]!).map((row) => row['id'])).toEqual(['3']);
    expect(rowsOf(results, reqs[11]!)).toEqual([{ n: '43', all_active: 'true' }]);
    expect(rowsOf(results, reqs[12]!)).toEqual([{ n: '43', all_active: 'false' }]);
  });

  it('SQL shapes: a parameter used twice, $10 next to $1, $1 in literals and comments, a trailing ";", LIMIT, a CTE, a function in FROM', async () => {
    const r = newRunner();
    const ten = (k: number) => Array.from({ length: 10 }, (_, i) => String(k * 100 + i + 1));
    const reqs = [
      ...requests('SELECT id FROM people WHERE id = $1 OR org = $1 ORDER BY id LIMIT 3', [['4'], ['9'], ['0']]),
      ...requests('SELECT $1::int AS a, $10::text AS j, $2 || $3 || $4 || $5 || $6 || $7 || $8 || $9 AS mid', [ten(1), ten(2)]),
      ...requests("SELECT '$1' AS lit, $$ $1 $$ AS dollar, E'\\'$1' AS e, name AS \"$1\" /* $1 */ FROM people -- $1\nWHERE id = $1;", [['5'], ['6']]),
      ...requests('SELECT name FROM people ORDER BY id LIMIT $1', [['2'], ['0']]),
      ...requests('WITH p AS (SELECT * FROM people WHERE id = $1) SELECT b.name FROM p JOIN people b ON b.id = p.id + 1', [['1'], ['500']]),
      ...requests('SELECT g FROM generate_series(1, $1) AS g', [['3'], [null]]),
    ];
    const results = await r.run(reqs);
    expect(r.statements).toEqual({ single: 0, batched: 6 });
    expect(results).toEqual(await alone(reqs));
    expect(rowsOf(results, reqs[0]!)).toEqual([{ id: '4' }, { id: '24' }, { id: '34' }]);
    expect(rowsOf(results, reqs[3]!)).toEqual([{ a: '101', j: '110', mid: '102103104105106107108109' }]);
    expect(rowsOf(results, reqs[5]!)).toEqual([{ lit: '$1', dollar: ' $1 ', e: "'$1", $1: 'p5' }]);
    expect(rowsOf(results, reqs[7]!)).toEqual([{ name: 'p1' }, { name: 'p2' }]);
    expect(rowsOf(results, reqs[9]!)).toEqual([{ name: 'p2' }]);
    expect(rowsOf(results, reqs[11]!)).toEqual([{ g: '1' }, { g: '2' }, { g: '3' }]);
  });

  it('a value that fails its cast fails its own request only, with the message it gets alone', async () => {
    const r = newRunner();
    const reqs = requests('SELECT name FROM people WHERE id = $1', [['1'], ['oops'], ['3']]);
    const results = await r.run(reqs);
    expect(r.statements).toEqual({ single: 3, batched: 1 });
    expect(results.get(reqs[1]!.id)).toEqual({ ok: false, message: 'invalid input syntax for type integer: "oops"' });
    expect(rowsOf(results, reqs[0]!)).toEqual([{ name: 'p1' }]);
    expect(rowsOf(results, reqs[2]!)).toEqual([{ name: 'p3' }]);
    expect(results).toEqual(await alone(reqs));
  });

  it('the timeout still cancels a slow parameter list, and only that one fails', async () => {
    const r = newRunner();
    const reqs = requests(
      'SELECT name FROM people CROSS JOIN LATERAL pg_sleep(CASE WHEN people.id = 3 THEN 5 ELSE 0 END) AS s WHERE id = $1',
      [['1'], ['2'], ['3']],
      { timeoutMs: 300 },
    );
    const started = Date.now();
    const results = await r.run(reqs);
    expect(Date.now() - started).toBeLessThan(4_000);
    expect(r.statements).toEqual({ single: 3, batched: 1 });
    expect(results.get(reqs[2]!.id)).toEqual({ ok: false, message: 'canceling statement due to statement timeout' });
    expect(rowsOf(results, reqs[0]!)).toEqual([{ name: 'p1' }]);
    expect(rowsOf(results, reqs[1]!)).toEqual([{ name: 'p2' }]);
  });

  it('a parameter of an array type is not combined; one of a type with another delimiter is', async () => {
    const r = newRunner();
    const arrays = requests('SELECT name FROM people WHERE id = ANY($1) ORDER BY id', [['{1,2}'], ['{3}']]);
    const boxes = requests('SELECT id FROM shapes WHERE b ~= $1', [['((0,0),(1,1))'], ['(2,2),(0,0)'], ['((5,5),(6,6))']]);
    const results = await r.run([...arrays, ...boxes]);
    expect(r.statements).toEqual({ single: 2, batched: 1 });
    expect(rowsOf(results, arrays[0]!)).toEqual([{ name: 'p1' }, { name: 'p2' }]);
    expect(rowsOf(results, boxes[1]!)).toEqual([{ id: '2' }]);
    expect(results).toEqual(await alone([...arrays, ...boxes]));
  });

  it('reads string literals as the server does when standard_conforming_strings is off', async () => {
    const other = await createTestDatabase('lookups_scs');
    await (await sharedPostgres()).query(`${PEOPLE}; ALTER DATABASE ${other.name} SET standard_conforming_strings = off`, [], other.name);
    const r = newRunner(other.url);
    const reqs = requests("SELECT 'it\\'s ' || name || ' $1' AS x FROM people WHERE id = $1", [['1'], ['2']]);
    const results = await r.run(reqs);
    expect(r.statements).toEqual({ single: 0, batched: 1 });
    expect(rowsOf(results, reqs[1]!)).toEqual([{ x: "it's p2 $1" }]);
    expect(results).toEqual(await alone(reqs, other.url));
  });
});
