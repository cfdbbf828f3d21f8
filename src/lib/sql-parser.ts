// PostgreSQL's own parser (libpg_query, compiled to WebAssembly), for query rules, run in a short-lived
// child process. In this process V8 would optimise the parser's giant grammar function with TurboFan
// as soon as it runs a few times, which takes about 550 MB for a moment (measured on Node 24: peak RSS
// 600 MB against 59 MB); the child runs it with `--liftoff-only` (V8's baseline WebAssembly compiler:
// fast enough for the few statements of a mapping file), and the worker never loads it at all.
import { execFileSync, spawn } from 'node:child_process';
import { createRequire } from 'node:module';

/** Parses one SQL text into libpg_query's parse tree; throws with PostgreSQL's message and position. */
export type ParseSql = (sql: string) => unknown;

type Parsed = { tree: unknown } | { error: string };

const CHILD = `
const lib = require(process.env.CDC_LIBPG_QUERY);
let input = '';
process.stdin.setEncoding('utf8');
process.stdin.on('data', (chunk) => { input += chunk; });
process.stdin.on('end', () => {
  lib.loadModule().then(() => {
    const out = JSON.parse(input).map((sql) => {
      try {
        return { tree: lib.parseSync(sql) };
      } catch (err) {
        const at = err && err.sqlDetails ? err.sqlDetails.cursorPosition : undefined;
        const message = err instanceof Error ? err.message : String(err);
        return { error: typeof at === 'number' && at >= 0 ? message + ' (at character ' + (at + 1) + ')' : message };
      }
    });
    process.stdout.write(JSON.stringify(out));
  }, (err) => {
    process.stderr.write(String(err && err.stack || err));
    process.exit(1);
  });
});
`;

function childArgs(): { args: string[]; env: NodeJS.ProcessEnv } {
  const library = createRequire(import.meta.url).resolve('libpg-query');
  return { args: ['--liftoff-only', '-e', CHILD], env: { ...process.env, CDC_LIBPG_QUERY: library } };
}

function lookup(parsed: ReadonlyMap<string, Parsed>): ParseSql {
  return (sql) => {
    let result = parsed.get(sql);
    // Not among the texts parsed up front: parse it on its own (a test, a rule added later).
    result ??= parseSync([sql])[0]!;
    if ('error' in result) throw new Error(result.error);
    return result.tree;
  };
}

function parseSync(texts: readonly string[]): Parsed[] {
  const { args, env } = childArgs();
  const stdout = execFileSync(process.execPath, args, { input: JSON.stringify(texts), env, encoding: 'utf8', maxBuffer: 256 * 1024 * 1024 });
  return JSON.parse(stdout) as Parsed[];
}

/**
 * A parser for query rules: `texts` are parsed up front by one child process; another text is parsed
 * when asked for, by a child of its own.
 */
export async function loadSqlParser(texts: readonly string[] = []): Promise<ParseSql> {
  if (texts.length === 0) return lookup(new Map());
  const { args, env } = childArgs();
  const results = await new Promise<Parsed[]>((resolve, reject) => {
    const child = spawn(process.execPath, args, { env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    child.once('error', (err) => reject(new Error(`could not start the SQL parser: ${err.message}`, { cause: err })));
    child.once('close', (code) => {
      if (code !== 0) return reject(new Error(`the SQL parser failed (exit code ${code}): ${stderr.trim().split('\n')[0] ?? ''}`));
      try {
        resolve(JSON.parse(stdout) as Parsed[]);
      } catch (err) {
        reject(new Error('the SQL parser gave no answer', { cause: err }));
      }
    });
    child.stdin.end(JSON.stringify(texts));
  });
  return lookup(new Map(texts.map((text, i) => [text, results[i]!])));
}
