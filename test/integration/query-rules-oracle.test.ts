// Query rules proved by an oracle, not by examples: for each shape of query, a set of cached parameter
// tuples, and thousands of random single-statement writes (inserts, updates that move rows between
// groups and change keys, deletes). After each write the worker has applied (a barrier), the query is
// run again for every tuple: each tuple whose result changed must have had its key deleted by the worker
// (a miss fails the test); each deleted key whose result did not change counts against precision.
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { servicesMissing } from '../harness/services.js';
import { createScenario, type Scenario } from './scenario.js';

const WRITES = Number(process.env['ORACLE_WRITES'] ?? 2_000);

interface Shape {
  name: string;
  schema: string;
  /** The query rule, as a YAML list item. */
  rule: string;
  query: string;
  tuples: string[][];
  key: (tuple: readonly string[]) => string;
  write: (rng: Rng) => [string, unknown[]];
}

type Rng = () => number;

/** A small deterministic generator (mulberry32): the same seed gives the same writes. */
function rng(seed: number): Rng {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const pick = <T,>(r: Rng, list: readonly T[]): T => list[Math.floor(r() * list.length)]!;
const int = (r: Rng, n: number) => 1 + Math.floor(r() * n);

const NAMES = ['ada', 'alan', 'grace'];
const EMAILS = ['a@x', 'b@x'];
const SLUGS = ['acme', 'globex', 'initech'];

const USERS_COMMENTS = `
  CREATE TABLE users (id int PRIMARY KEY, name text, email text, bio text);
  CREATE TABLE comments (id int PRIMARY KEY, user_id int, content text, likes int);
  ALTER TABLE users REPLICA IDENTITY FULL;
  ALTER TABLE comments REPLICA IDENTITY FULL;
  INSERT INTO users SELECT i, (ARRAY['ada','alan','grace'])[1 + i % 3], (ARRAY['a@x','b@x'])[1 + i % 2], 'bio' FROM generate_series(1, 8) i;
  INSERT INTO comments SELECT i, 1 + i % 8, 'c' || i, i % 5 FROM generate_series(1, 30) i;
`;

function usersCommentsWrite(r: Rng): [string, unknown[]] {
  const p = r();
  if (p < 0.15) return ['INSERT INTO users (id, name, email, bio) VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO NOTHING', [int(r, 12), pick(r, NAMES), pick(r, EMAILS), 'bio']];
  if (p < 0.25) return ['UPDATE users SET name = $2 WHERE id = $1', [int(r, 12), pick(r, NAMES)]];
  if (p < 0.32) return ['UPDATE users SET email = $2 WHERE id = $1', [int(r, 12), pick(r, EMAILS)]];
  if (p < 0.37) return ['UPDATE users SET bio = $2 WHERE id = $1', [int(r, 12), `bio ${int(r, 100)}`]];
  if (p < 0.42) return ['UPDATE users SET id = $2 WHERE id = $1 AND NOT EXISTS (SELECT 1 FROM users WHERE id = $2)', [int(r, 12), int(r, 12)]];
  if (p < 0.47) return ['DELETE FROM users WHERE id = $1', [int(r, 12)]];
  if (p < 0.62) return ['INSERT INTO comments (id, user_id, content, likes) VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO NOTHING', [int(r, 45), int(r, 12), `c${int(r, 100)}`, int(r, 5)]];
  if (p < 0.72) return ['UPDATE comments SET user_id = $2 WHERE id = $1', [int(r, 45), int(r, 12)]];
  if (p < 0.80) return ['UPDATE comments SET content = $2 WHERE id = $1', [int(r, 45), `c${int(r, 100)}`]];
  if (p < 0.87) return ['UPDATE comments SET likes = likes + 1 WHERE id = $1', [int(r, 45)]];
  if (p < 0.92) return ['UPDATE comments SET id = $2 WHERE id = $1 AND NOT EXISTS (SELECT 1 FROM comments WHERE id = $2)', [int(r, 45), int(r, 45)]];
  if (p < 0.94) return ['UPDATE comments SET user_id = $2 WHERE user_id = $1', [int(r, 12), int(r, 12)]];
  // A user and their comments in one transaction, as ON DELETE CASCADE would.
  if (p < 0.96) return ['WITH gone AS (DELETE FROM users WHERE id = $1 RETURNING id) DELETE FROM comments WHERE user_id IN (SELECT id FROM gone)', [int(r, 12)]];
  return ['DELETE FROM comments WHERE id = $1', [int(r, 45)]];
}

const ORGS_TASKS = `
  CREATE TABLE orgs (id int PRIMARY KEY, slug text, plan text);
  CREATE TABLE projects (id int PRIMARY KEY, org_id int, name text);
  CREATE TABLE tasks (id int PRIMARY KEY, project_id int, title text, done boolean);
  ALTER TABLE orgs REPLICA IDENTITY FULL;
  ALTER TABLE projects REPLICA IDENTITY FULL;
  ALTER TABLE tasks REPLICA IDENTITY FULL;
  INSERT INTO orgs SELECT i, (ARRAY['acme','globex','initech'])[1 + i % 3], 'free' FROM generate_series(1, 4) i;
  INSERT INTO projects SELECT i, 1 + i % 4, 'p' || i FROM generate_series(1, 8) i;
  INSERT INTO tasks SELECT i, 1 + i % 8, 't' || i, i % 3 = 0 FROM generate_series(1, 30) i;
`;

function orgsTasksWrite(r: Rng): [string, unknown[]] {
  const p = r();
  if (p < 0.06) return ['INSERT INTO orgs (id, slug, plan) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING', [int(r, 6), pick(r, SLUGS), 'free']];
  if (p < 0.12) return ['UPDATE orgs SET slug = $2 WHERE id = $1', [int(r, 6), pick(r, SLUGS)]];
  if (p < 0.16) return ['UPDATE orgs SET plan = $2 WHERE id = $1', [int(r, 6), pick(r, ['free', 'pro'])]];
  if (p < 0.19) return ['UPDATE orgs SET id = $2 WHERE id = $1 AND NOT EXISTS (SELECT 1 FROM orgs WHERE id = $2)', [int(r, 6), int(r, 6)]];
  if (p < 0.22) return ['DELETE FROM orgs WHERE id = $1', [int(r, 6)]];
  if (p < 0.30) return ['INSERT INTO projects (id, org_id, name) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING', [int(r, 12), int(r, 6), `p${int(r, 8)}`]];
  if (p < 0.38) return ['UPDATE projects SET org_id = $2 WHERE id = $1', [int(r, 12), int(r, 6)]];
  if (p < 0.42) return ['UPDATE projects SET name = $2 WHERE id = $1', [int(r, 12), `p${int(r, 8)}`]];
  if (p < 0.45) return ['UPDATE projects SET id = $2 WHERE id = $1 AND NOT EXISTS (SELECT 1 FROM projects WHERE id = $2)', [int(r, 12), int(r, 12)]];
  if (p < 0.49) return ['DELETE FROM projects WHERE id = $1', [int(r, 12)]];
  if (p < 0.62) return ['INSERT INTO tasks (id, project_id, title, done) VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO NOTHING', [int(r, 45), int(r, 12), `t${int(r, 100)}`, r() < 0.5]];
  if (p < 0.72) return ['UPDATE tasks SET project_id = $2 WHERE id = $1', [int(r, 45), int(r, 12)]];
  if (p < 0.80) return ['UPDATE tasks SET done = NOT done WHERE id = $1', [int(r, 45)]];
  if (p < 0.87) return ['UPDATE tasks SET title = $2 WHERE id = $1', [int(r, 45), `t${int(r, 100)}`]];
  if (p < 0.92) return ['UPDATE tasks SET id = $2 WHERE id = $1 AND NOT EXISTS (SELECT 1 FROM tasks WHERE id = $2)', [int(r, 45), int(r, 45)]];
  if (p < 0.94) return ['UPDATE tasks SET project_id = $2 WHERE project_id = $1', [int(r, 12), int(r, 12)]];
  // A project and its tasks, or an organisation with its projects and their tasks, in one transaction.
  if (p < 0.955) return ['WITH gone AS (DELETE FROM projects WHERE id = $1 RETURNING id) DELETE FROM tasks WHERE project_id IN (SELECT id FROM gone)', [int(r, 12)]];
  if (p < 0.97) {
    return [
      'WITH o AS (DELETE FROM orgs WHERE id = $1 RETURNING id), p AS (DELETE FROM projects WHERE org_id IN (SELECT id FROM o) RETURNING id) DELETE FROM tasks WHERE project_id IN (SELECT id FROM p)',
      [int(r, 6)],
    ];
  }
  return ['DELETE FROM tasks WHERE id = $1', [int(r, 45)]];
}

const cross = (a: readonly string[], b: readonly string[]) => a.flatMap((x) => b.map((y) => [x, y]));
const ids = (n: number) => Array.from({ length: n }, (_, i) => [String(i + 1)]);

const SHAPES: Shape[] = [
  {
    name: "the worked example: comments of the user with a name and an email (a join, parameters on the joined table)",
    schema: USERS_COMMENTS,
    query: 'SELECT c.id, c.content FROM comments c JOIN users u ON u.id = c.user_id WHERE u.name = $1 AND u.email = $2 ORDER BY c.id',
    rule: `  - query: "SELECT c.id, c.content FROM comments c JOIN users u ON u.id = c.user_id WHERE u.name = $1 AND u.email = $2 ORDER BY c.id"
    params: [name, email]
    invalidate: ["comments:name={name}:email={email}"]`,
    tuples: cross(NAMES, EMAILS),
    key: ([name, email]) => `comments:name=${name}:email=${email}`,
    write: usersCommentsWrite,
  },
  {
    name: 'a two-hop join: the tasks of an organisation, through its projects',
    schema: ORGS_TASKS,
    query: 'SELECT t.id, t.title, t.done FROM tasks t JOIN projects p ON p.id = t.project_id JOIN orgs o ON o.id = p.org_id WHERE o.slug = $1 ORDER BY t.id',
    rule: `  - query: "SELECT t.id, t.title, t.done FROM tasks t JOIN projects p ON p.id = t.project_id JOIN orgs o ON o.id = p.org_id WHERE o.slug = $1 ORDER BY t.id"
    params: [slug]
    invalidate: ["tasks:org={slug}"]`,
    tuples: SLUGS.map((s) => [s]),
    key: ([slug]) => `tasks:org=${slug}`,
    write: orgsTasksWrite,
  },
  {
    name: "an aggregate over a group keyed by the parameter: a user's comment count and likes",
    schema: USERS_COMMENTS,
    query: 'SELECT count(*) AS n, sum(likes) AS likes FROM comments WHERE user_id = $1 GROUP BY user_id',
    rule: `  - query: "SELECT count(*) AS n, sum(likes) AS likes FROM comments WHERE user_id = $1 GROUP BY user_id"
    params: [user]
    invalidate: ["stats:user={user}"]`,
    tuples: ids(12),
    key: ([user]) => `stats:user=${user}`,
    write: usersCommentsWrite,
  },
  {
    name: 'a constant filter, ORDER BY and LIMIT: the first three open tasks of a project',
    schema: ORGS_TASKS,
    query: 'SELECT t.id, t.title FROM tasks t WHERE t.project_id = $1 AND t.done = false ORDER BY t.id LIMIT 3',
    rule: `  - query: "SELECT t.id, t.title FROM tasks t WHERE t.project_id = $1 AND t.done = false ORDER BY t.id LIMIT 3"
    params: [project]
    invalidate: ["open:project={project}"]`,
    tuples: ids(12),
    key: ([project]) => `open:project=${project}`,
    write: orgsTasksWrite,
  },
  {
    name: "a constant filter on the joined table: the tasks of an organisation's projects named p1..p4 on the free plan, by slug",
    schema: ORGS_TASKS,
    query: "SELECT t.id FROM tasks t JOIN projects p ON p.id = t.project_id JOIN orgs o ON o.id = p.org_id WHERE o.slug = $1 AND p.name IN ('p1', 'p2', 'p3', 'p4') AND o.plan = 'free' ORDER BY t.id",
    rule: `  - query: "SELECT t.id FROM tasks t JOIN projects p ON p.id = t.project_id JOIN orgs o ON o.id = p.org_id WHERE o.slug = $1 AND p.name IN ('p1', 'p2', 'p3', 'p4') AND o.plan = 'free' ORDER BY t.id"
    params: [slug]
    invalidate: ["named:org={slug}"]`,
    tuples: SLUGS.map((s) => [s]),
    key: ([slug]) => `named:org=${slug}`,
    write: orgsTasksWrite,
  },
  {
    name: 'a subquery, which is not supported: covered coarsely (coarse: pattern), never wrong',
    schema: USERS_COMMENTS,
    query: 'SELECT c.id FROM comments c WHERE c.user_id IN (SELECT u.id FROM users u WHERE u.email = $1) AND c.likes >= 2 ORDER BY c.id',
    rule: `  - query: "SELECT c.id FROM comments c WHERE c.user_id IN (SELECT u.id FROM users u WHERE u.email = $1) AND c.likes >= 2 ORDER BY c.id"
    params: [email]
    invalidate: ["liked:email={email}"]
    coarse: pattern`,
    tuples: EMAILS.map((e) => [e]),
    key: ([email]) => `liked:email=${email}`,
    write: usersCommentsWrite,
  },
];

const results: Array<Record<string, unknown>> = [];
afterAll(() => {
  if (results.length === 0) return;
  console.log(`query-rule oracle: ${JSON.stringify(results)}`);
  // `CDC_RECORD_RESULTS=1 npx vitest run test/integration/query-rules-oracle.test.ts` records the figures
  // docs/configuration.md quotes.
  if (process.env['CDC_RECORD_RESULTS'] !== '1' || results.length !== SHAPES.length) return;
  const dir = fileURLToPath(new URL('./results/', import.meta.url));
  mkdirSync(dir, { recursive: true });
  const git = (...args: string[]) => execFileSync('git', args, { cwd: fileURLToPath(new URL('../../', import.meta.url)), encoding: 'utf8' }).trim();
  const dirty = git('status', '--porcelain', '--', 'src') !== '';
  const recorded = {
    command: 'CDC_RECORD_RESULTS=1 npx vitest run test/integration/query-rules-oracle.test.ts',
    worker: `${git('rev-parse', '--short', 'HEAD')}${dirty ? '-dirty' : ''}`,
    recordedAt: new Date().toISOString(),
    writesPerShape: WRITES,
    shapes: results,
  };
  writeFileSync(`${dir}query-rules-oracle.json`, `${JSON.stringify(recorded, null, 2)}\n`);
});

describe.skipIf(servicesMissing('postgres', 'redis'))('query rules against an oracle', () => {
  SHAPES.forEach((shape, index) => {
    it(`misses no invalidation: ${shape.name}`, { timeout: 600_000 }, async () => {
      const s = await createScenario({ schema: shape.schema, rules: shape.rule });
      try {
        await s.startWorker();
        const outcome = await runOracle(s, shape, rng(0x5eed + index));
        results.push({ shape: shape.name, ...outcome });
        expect(outcome.missed, JSON.stringify(outcome.missedExamples)).toBe(0);
        expect(outcome.deadLetters).toBe(0);
        // The writes reached the cached results: a test whose writes changed nothing proves nothing.
        expect(outcome.changedResults).toBeGreaterThan(WRITES / 20);
      } finally {
        await s.cleanup();
      }
    });
  });
});

async function runOracle(s: Scenario, shape: Shape, r: Rng) {
  const db = new pg.Client({ connectionString: s.db.url });
  await db.connect();
  try {
    return await oracleLoop(s, db, shape, r);
  } finally {
    await db.end();
  }
}

async function oracleLoop(s: Scenario, db: pg.Client, shape: Shape, r: Rng) {
  const keys = shape.tuples.map((t) => shape.key(t));
  const results = async () => Promise.all(shape.tuples.map(async (t) => JSON.stringify((await db.query(shape.query, t)).rows)));
  const exists = async () => {
    const replies = (await s.redis.pipeline(keys.map((key) => ['exists', s.prefix + key])).exec()) ?? [];
    return replies.map(([err, n]) => {
      if (err) throw err;
      return n === 1;
    });
  };
  let before = await results();
  await s.seed(...keys);
  let writes = 0;
  let effective = 0;
  let changedResults = 0;
  let invalidations = 0;
  let needless = 0;
  let missed = 0;
  const missedExamples: string[] = [];
  while (writes < WRITES) {
    const [sql, params] = shape.write(r);
    const done = await db.query(sql, params);
    writes++;
    if ((done.rowCount ?? 0) > 0) effective++;
    await fastBarrier(s, db);
    const after = await results();
    const gone = (await exists()).map((present) => !present);
    const reseed: string[] = [];
    for (let i = 0; i < keys.length; i++) {
      const changed = after[i] !== before[i];
      if (changed) changedResults++;
      if (gone[i]) {
        invalidations++;
        if (!changed) needless++;
        reseed.push(keys[i]!);
      } else if (changed) {
        missed++;
        if (missedExamples.length < 5) missedExamples.push(`${sql} ${JSON.stringify(params)}: ${keys[i]} ${before[i]} -> ${after[i]}`);
        reseed.push(keys[i]!);
      }
    }
    await s.seed(...reseed);
    before = after;
  }
  const deadLetters = (await s.deadLetters()).length;
  return {
    writes,
    effectiveWrites: effective,
    changedResults,
    invalidations,
    missed,
    missedExamples,
    needlessInvalidations: needless,
    precision: invalidations === 0 ? 1 : Number(((invalidations - needless) / invalidations).toFixed(3)),
    deadLetters,
  };
}

let sentinel = 1_000_000;

/** scenario.barrier(), polling every 2 ms: thousands of writes wait on it one by one. */
async function fastBarrier(s: Scenario, db: pg.Client): Promise<void> {
  const id = ++sentinel;
  await s.seed(`sentinel:${id}`);
  await db.query('INSERT INTO public.cdc_sentinel (id) VALUES ($1)', [id]);
  const deadline = Date.now() + 30_000;
  while (await s.exists(`sentinel:${id}`)) {
    if (Date.now() > deadline) throw new Error('the worker did not apply the sentinel change');
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}
