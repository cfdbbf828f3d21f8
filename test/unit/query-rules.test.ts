import { beforeAll, describe, expect, it } from 'vitest';
import { explainRules } from '../../src/commands/explain.js';
import { evaluate } from '../../src/core/evaluate.js';
import { deriveQueryRules, type QueryRuleSpec } from '../../src/core/query-rules.js';
import { compileRules, type RuleEntry } from '../../src/core/rules.js';
import { loadSqlParser, type ParseSql } from '../../src/lib/sql-parser.js';
import { parse as parseYaml } from 'yaml';

let parseSql: ParseSql;
beforeAll(async () => {
  parseSql = await loadSqlParser();
});

const derive = (spec: QueryRuleSpec) => {
  const out = deriveQueryRules(spec, parseSql);
  expect(out.problems).toEqual([]);
  return Object.fromEntries(out.rules.map((r) => [r.alias, r.spec]));
};

describe('rules derived from a query', () => {
  it('the worked example: the joined table renders the key itself, the other reaches it by a lookup', () => {
    const rules = derive({
      query: 'SELECT c.id, c.content FROM comments c JOIN users u ON u.id = c.user_id WHERE u.name = $1 AND u.email = $2 ORDER BY c.id',
      params: ['name', 'email'],
      invalidate: ['comments:name={name}:email={email}'],
    });
    expect(rules['u']).toEqual({ table: 'public.users', when: { changed: ['email', 'id', 'name'] }, invalidate: ['comments:name={name}:email={email}'] });
    expect(rules['c']).toEqual({
      table: 'public.comments',
      when: { changed: ['content', 'id', 'user_id'] },
      lookup: { query: { sql: 'SELECT DISTINCT u.name AS name, u.email AS email FROM public.users AS u WHERE u.id = $1', params: ['user_id'], timeoutMs: 5000, retries: 3 } },
      invalidate: ['comments:name={query.name}:email={query.email}'],
    });
  });

  it('two hops: the lookup walks every table between, with their own conditions', () => {
    const rules = derive({
      query: "SELECT t.title FROM tasks t JOIN projects p ON p.id = t.project_id JOIN orgs o ON o.id = p.org_id WHERE o.slug = $1 AND p.archived = false",
      params: ['slug'],
      invalidate: ['tasks:{slug}'],
      lookupTimeoutMs: 200,
      lookupRetries: 1,
    });
    expect(rules['t']!.lookup).toEqual({
      query: {
        sql: 'SELECT DISTINCT o.slug AS slug FROM public.projects AS p, public.orgs AS o WHERE p.id = $1 AND p.org_id = o.id AND (p.archived = false)',
        params: ['project_id'],
        timeoutMs: 200,
        retries: 1,
      },
    });
    expect(rules['p']!.lookup!['query']!.sql).toBe('SELECT DISTINCT o.slug AS slug FROM public.orgs AS o WHERE o.id = $1');
    expect(rules['o']!.lookup).toBeUndefined();
  });

  it('a parameter joined to several tables is read from the changed row where it can be', () => {
    const rules = derive({ query: 'SELECT c.id FROM comments c JOIN users u ON u.id = c.user_id WHERE u.id = $1', params: ['user'], invalidate: ['comments:{user}'] });
    expect(rules['c']).toMatchObject({ invalidate: ['comments:{user_id}'] });
    expect(rules['c']!.lookup).toBeUndefined();
    expect(rules['u']).toMatchObject({ invalidate: ['comments:{id}'] });
  });

  it('SELECT * reads every column: every update counts; a table whose columns are never read counts by inserts and deletes', () => {
    const star = derive({ query: 'SELECT * FROM comments WHERE user_id = $1', params: ['user'], invalidate: ['c:{user}'] });
    expect(star['comments']!.when).toBeUndefined();
    const count = derive({ query: 'SELECT count(*) FROM comments', invalidate: ['comments:count'] });
    expect(count['comments']).toEqual({ table: 'public.comments', on: ['insert', 'delete', 'truncate'], invalidate: ['comments:count'] });
  });

  it('a key without parameters, a fallback, literal braces and quoted names pass through', () => {
    const rules = derive({
      query: 'SELECT "Title" FROM "My Schema"."Posts" p WHERE p."Author" = $1',
      params: ['author'],
      invalidate: ['{{posts}}:{author}'],
      bump: ['posts:version'],
      fallback: { bump: ['posts:version'] },
    });
    expect(rules['p']).toEqual({
      table: '"My Schema"."Posts"',
      when: { changed: ['Author', 'Title'] },
      invalidate: ['{{posts}}:{Author}'],
      bump: ['posts:version'],
      fallback: { bump: ['posts:version'] },
    });
  });

  it('a self-join derives one rule per occurrence', () => {
    const out = deriveQueryRules({ query: 'SELECT b.id FROM users a JOIN users b ON b.manager_id = a.id WHERE a.email = $1', params: ['email'], invalidate: ['reports:{email}'] }, parseSql);
    expect(out.rules.map((r) => [r.alias, r.spec.table])).toEqual([
      ['a', 'public.users'],
      ['b', 'public.users'],
    ]);
    expect(out.rules[1]!.spec.lookup!['query']!.sql).toBe('SELECT DISTINCT a.email AS email FROM public.users AS a WHERE a.id = $1');
  });

  it('ORDER BY and GROUP BY may name an output column, which is no column of a table', () => {
    const rules = derive({ query: 'SELECT c.user_id AS author, count(*) AS n FROM comments c JOIN users u ON u.id = c.user_id WHERE u.name = $1 GROUP BY author ORDER BY n DESC', params: ['name'], invalidate: ['top:{name}'] });
    expect(rules['c']!.when).toEqual({ changed: ['user_id'] });
    expect(rules['u']!.when).toEqual({ changed: ['id', 'name'] });
  });

  it(':name placeholders, as ORMs write them, name the parameters themselves', () => {
    const rules = derive({ query: 'SELECT c.id FROM comments c JOIN users u ON u.id = c.user_id WHERE u.name = :name AND u.email = :email', invalidate: ['k:{name}:{email}'] });
    expect(rules['u']).toMatchObject({ invalidate: ['k:{name}:{email}'] });
    expect(rules['c']!.lookup!['query']!.sql).toBe('SELECT DISTINCT u.name AS name, u.email AS email FROM public.users AS u WHERE u.id = $1');
    const both = deriveQueryRules({ query: 'SELECT id FROM users WHERE id = :id', params: ['id'], invalidate: ['k:{id}'] }, parseSql);
    expect(both.problems).toEqual([{ path: ['params'], message: 'the query names its parameters (:id): leave "params" out' }]);
  });

  it('a condition on parameters outside the key, or on one table, narrows nothing it must not', () => {
    const rules = derive({ query: 'SELECT c.id FROM comments c WHERE c.user_id = $1 AND c.likes > $2 LIMIT $3', params: ['user', 'min', 'n'], invalidate: ['c:{user}'] });
    expect(rules['c']).toMatchObject({ invalidate: ['c:{user_id}'], when: { changed: ['id', 'likes', 'user_id'] } });
  });
});

describe('query rules in the compiler and explain --rule', () => {
  const entry: RuleEntry = {
    query: 'SELECT c.id FROM comments c JOIN users u ON u.id = c.user_id WHERE u.name = $1',
    params: ['name'],
    invalidate: ['comments:name={name}'],
    fallback: { bump: ['comments:version'] },
  };

  it('compiles to one rule per table, named after the query rule and the alias', () => {
    const { rules, problems } = compileRules([{ file: 'm.yaml', rules: [entry] }], { parseSql });
    expect(problems).toEqual([]);
    expect([...rules.byTable.values()].flat().map((r) => r.id)).toEqual(['m.yaml#rules[0](c)', 'm.yaml#rules[0](u)']);
    const out = evaluate(
      { schema: 'public', table: 'users', op: 'update', before: { id: '1', name: 'Ada' }, after: { id: '1', name: 'Ada K' }, keyColumns: ['id'], version: null, position: '0/1' },
      rules,
    );
    expect(out.operations).toEqual([
      { action: 'delete', key: 'comments:name=Ada' },
      { action: 'delete', key: 'comments:name=Ada K' },
    ]);
  });

  it('says the parser is missing rather than ignoring a query rule', () => {
    const { problems } = compileRules([{ file: 'm.yaml', rules: [entry] }]);
    expect(problems).toEqual([{ file: 'm.yaml', path: ['rules', 0, 'query'], message: 'query rules need the SQL parser, which was not loaded' }]);
  });

  it('prints the derived rules in mapping syntax, which compile as they are', () => {
    const { rules } = compileRules([{ file: 'm.yaml', rules: [entry, { table: 'posts', invalidate: ['post:{id}'] }] }], { parseSql });
    const printed = explainRules(rules, 'm.yaml#rules[0]');
    expect(printed.ok).toBe(true);
    const text = printed.ok ? printed.text : '';
    expect(text).toContain('# m.yaml#rules[0](c): derived from the query of m.yaml#rules[0]');
    expect(text).toContain('invalidate: ["comments:name={query.name}"]');
    expect(text).not.toContain('post:{id}');
    const copied = compileRules([{ file: 'copy.yaml', rules: (parseYaml(text) as { rules: RuleEntry[] }).rules }]);
    expect(copied.problems).toEqual([]);
    const strip = (r: { id: string; file: string; index: number; spec?: unknown }) => ({ ...r, id: '', file: '', index: 0, spec: undefined });
    const a = [...rules.byTable.values()].flat().filter((r) => r.index === 0).map(strip);
    const b = [...copied.rules.byTable.values()].flat().map(strip);
    expect(JSON.stringify(b, (_, v: unknown) => (v instanceof Set ? [...v] : v instanceof Map ? [...v] : v))).toBe(
      JSON.stringify(a, (_, v: unknown) => (v instanceof Set ? [...v] : v instanceof Map ? [...v] : v)),
    );
    expect(explainRules(rules, 'all').ok).toBe(true);
    expect(explainRules(rules, 'm.yaml')).toMatchObject({ ok: true });
    expect(explainRules(rules, 'x.yaml#rules[9]')).toEqual({ ok: false, error: '--rule x.yaml#rules[9] matches no rule (rules: m.yaml#rules[0], m.yaml#rules[1]; or a mapping file, or all)' });
  });
});

describe('coarse: a query of an unsupported shape, covered anyway', () => {
  it('refuses it without coarse, and says coarse would cover it', () => {
    const out = deriveQueryRules({ query: 'SELECT id FROM posts WHERE author_id IN (SELECT id FROM users WHERE name = $1)', params: ['name'], invalidate: ['posts:{name}'] }, parseSql);
    expect(out.rules).toEqual([]);
    expect(out.problems).toEqual([{ path: ['query'], message: expect.stringContaining('subqueries are not supported') }]);
    expect(out.problems[0]!.message).toMatch(
      /subqueries are not supported \(IN \(SELECT \.\.\.\)\): write its rules by hand .*\. Set "coarse: pattern" to cover it coarsely .*, as these rules written by hand would: \{ table: "public\.posts", patterns: \["posts:\*"\] \}; \{ table: "public\.users", patterns: \["posts:\*"\] \}$/,
    );
  });

  it('coarse: pattern: every table it mentions (subqueries and CTEs too, not the CTE names) deletes every key, a parameter matching anything', () => {
    const out = deriveQueryRules(
      {
        query: 'WITH recent AS (SELECT * FROM public.comments WHERE likes > 3) SELECT p.id FROM posts p WHERE p.author_id IN (SELECT r.user_id FROM recent r JOIN users u ON u.id = r.user_id WHERE u.name = $1)',
        params: ['name'],
        invalidate: ['posts[by]:{name}:*'],
        bump: ['posts:version'],
        coarse: 'pattern',
      },
      parseSql,
    );
    expect(out.rules.map((r) => r.spec)).toEqual(
      ['public.comments', 'public.posts', 'public.users'].map((table) => ({ table, patterns: ['posts\\[by\\]:*:\\*'], bump: ['posts:version'] })),
    );
    expect(out.problems).toEqual([
      {
        path: ['query'],
        severity: 'warning',
        message: expect.stringMatching(/^WITH \(common table expressions\) is not supported.*Covered coarsely: any change to public\.comments, public\.posts, public\.users deletes every key of this rule \(pattern "posts\\\[by\\\]:\*:\\\*": a SCAN of the keyspace each time\)$/),
      },
    ]);
  });

  it('coarse with a tag: the tag the application registers the keys under, no SCAN', () => {
    const out = deriveQueryRules(
      { query: 'SELECT c.id FROM comments c JOIN users u ON u.id = c.user_id WHERE u.name = $1 AND c.kind = $2', params: ['name', 'kind'], invalidate: ['k:{name}:{kind}'], coarse: { tag: 'comments-by-author' } },
      parseSql,
    );
    expect(out.rules.map((r) => r.spec)).toEqual([
      { table: 'public.comments', tags: ['comments-by-author'] },
      { table: 'public.users', tags: ['comments-by-author'] },
    ]);
    expect(out.problems[0]).toMatchObject({ severity: 'warning', message: expect.stringContaining('(tag "comments-by-author")') });
  });

  it('a version bump keyed by a parameter cannot be covered coarsely', () => {
    const out = deriveQueryRules({ query: 'SELECT id FROM posts WHERE id > $1', params: ['after'], bump: ['posts:after:{after}'], coarse: 'pattern' }, parseSql);
    expect(out.rules).toEqual([]);
    expect(out.problems).toEqual([{ path: ['bump', 0], message: expect.stringContaining('names a parameter: a coarse rule cannot name it') }]);
  });

  it('mistakes in the rule itself stay errors, coarse or not', () => {
    const out = deriveQueryRules({ query: 'SELECT id FROM posts WHERE id = $1', params: ['id'], invalidate: ['post:{ident}'], coarse: 'pattern' }, parseSql);
    expect(out.problems).toEqual([{ path: ['invalidate', 0], message: expect.stringContaining('is not a parameter of the query') }]);
  });
});

describe('the parser stays out of the worker process', () => {
  it('loading a config with query rules adds no WebAssembly memory here (libpg_query runs in a child)', async () => {
    const { loadConfig } = await import('../../src/config/load.js');
    const before = process.memoryUsage().external;
    const loaded = await loadConfig(new URL('../../examples/query-rules/cdc-invalidator.yaml', import.meta.url).pathname, { DATABASE_URL: 'postgres://x@127.0.0.1/app' });
    expect(loaded.rules.tables.length).toBe(2);
    // The parser's WebAssembly memory alone is 130 MB, and its optimisation took 550 MB more at peak.
    expect(process.memoryUsage().external - before).toBeLessThan(32 * 1024 * 1024);
  });
});
