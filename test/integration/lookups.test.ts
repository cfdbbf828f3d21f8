import { afterEach, describe, expect, it } from 'vitest';
import { servicesMissing } from '../harness/services.js';
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
