#!/usr/bin/env node
// Regenerates CONSISTENCY.md from the consistency scenarios' results (test/consistency/results/*.json).
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../', import.meta.url));
const dir = `${root}test/consistency/results/`;
let files = [];
try {
  files = readdirSync(dir).filter((f) => f.endsWith('.json'));
} catch {
  // no results yet
}
const runs = files
  .map((f) => JSON.parse(readFileSync(dir + f, 'utf8')))
  .sort((a, b) => String(a.id).localeCompare(String(b.id), 'en', { numeric: true }));

const KINDS = ['cache-aside', 'lease client'];
const cell = (v) => (v === null || v === undefined ? '–' : String(v).replaceAll('|', '\\|'));
const client = (r, kind) => (r.clients ?? []).find((c) => c.client === kind);
const measured = (r) => r.error === undefined && KINDS.every((k) => client(r, k) !== undefined);
const ms = (v) => (v === 'never' ? 'never' : `${v}`);

function outcome(r) {
  if (!measured(r)) return 'not measured';
  const stale = KINDS.map((k) => client(r, k).staleKeys);
  const ok = r.expected === 'stale keys' ? stale.every((n) => n > 0) : stale.every((n) => n === 0);
  return ok ? 'yes' : '**no**';
}

function staleCell(r, kind) {
  if (!measured(r)) return '–';
  const c = client(r, kind);
  const race = c.raceKeys > 0 ? ` (and ${c.raceKeys} by its own race)` : '';
  return `**${c.staleKeys}** of ${c.keys}${race}`;
}

const lines = [
  '# Consistency',
  '',
  'What the scenarios of `test/consistency/` measured in their last run (`npm run test:consistency` runs them',
  'with recording on and regenerates this file with `npm run consistency`). Each run is an ordinary test with',
  'real processes: a PostgreSQL primary, a physical standby made by `pg_basebackup -R` (the synchronous',
  'standby, or a read replica with `recovery_min_apply_delay`), a real Redis and the built worker',
  '(`node dist/cli.js run`), with the `consistency:` setting shown.',
  '',
  'The load: writers update hot rows at a fixed rate (each update sets the row\'s version to the next',
  'number); readers read the same rows through the cache, half of the rows through textbook cache-aside',
  '(`GET`; on a miss `SELECT` from the read target, then `SET` with a one-hour TTL), the other half through',
  'the package\'s lease client (`cache.get`), side by side in the same run. The mapping is one rule,',
  '`item:{id}`.',
  '',
  '- **Stale keys after quiescence**: once the writes have stopped, the worker has applied and confirmed',
  '  everything (its slot\'s `confirmed_flush_lsn` reached the primary\'s `pg_current_wal_lsn()`), every',
  '  standby has replayed it (and, with `consistency.replicas`, the worker\'s second pass has run), and every',
  '  key has been read once more, the keys whose cached value differs from the primary\'s row. Nothing but',
  '  the TTL would ever remove them. A control run must show some (the test fails otherwise, so that the',
  '  scenario can fail at all); a run with the setting must show none. Textbook cache-aside also has a race',
  '  of its own that no worker setting closes ([docs/client.md](docs/client.md); the lease client closes it):',
  '  a fill that read the row before the worker\'s invalidation of the row\'s last write and wrote the cache',
  '  after it. Each stale key is told apart by times the test records: when the fill that left its value',
  '  read the row, and when the worker\'s last invalidation of the key (from its notifications, `redis.notifyChannel`)',
  '  reached the test. Keys stale that way are shown in brackets and do not count; an invalidation applied',
  '  before the commit was visible (the fill read after it) or never applied for the last write counts.',
  '- **Staleness window**: for each write, the time from its commit returning to the writer until a reader',
  '  was first given that version or a later one; p50 and p99 over every write of the run. "never": more',
  '  than that share of the writes were never seen before the run ended (stale until the TTL).',
  '',
  '## Stale keys after quiescence',
  '',
  '| run | scenario | reads from | worker setting | expected | textbook cache-aside | lease client | as expected |',
  '|---|---|---|---|---|---|---|---|',
  ...runs.map(
    (r) =>
      `| ${cell(r.id)} | ${cell(r.scenario)} | ${cell(r.readFrom)} | ${cell(r.setting)} | ${cell(r.expected)} | ${staleCell(r, 'cache-aside')} | ${staleCell(r, 'lease client')} | ${outcome(r)} |`,
  ),
  '',
  '## Staleness window',
  '',
  '| run | worker setting | cache-aside p50 / p99 (ms) | lease client p50 / p99 (ms) | writes never seen (cache-aside / lease client) | writes |',
  '|---|---|---|---|---|---|',
  ...runs.filter(measured).map((r) => {
    const [a, b] = KINDS.map((k) => client(r, k));
    return `| ${cell(r.id)} | ${cell(r.setting)} | ${ms(a.windowP50Ms)} / ${ms(a.windowP99Ms)} | ${ms(b.windowP50Ms)} / ${ms(b.windowP99Ms)} | ${a.writesNeverSeen} / ${b.writesNeverSeen} | ${a.writes + b.writes} |`;
  }),
  '',
  '## Runs',
  '',
  '| run | load (s) | to quiescence (s) | reads (cache-aside / lease client) | fills (cache-aside / lease client) | stale keys found (first few) | notes | worker | recorded |',
  '|---|---|---|---|---|---|---|---|---|',
  ...runs.map((r) => {
    if (!measured(r)) return `| ${cell(r.id)} | – | – | – | – | – | not measured: ${cell(r.error)} | ${cell(r.worker)} | ${cell(String(r.recordedAt ?? '').slice(0, 10))} |`;
    const [a, b] = KINDS.map((k) => client(r, k));
    const sample = [...a.staleSample.slice(0, 3), ...b.staleSample.slice(0, 3)].join('; ');
    return `| ${cell(r.id)} | ${cell(r.loadSeconds)} | ${cell(r.quiesceSeconds)} | ${a.reads} / ${b.reads} | ${a.fills} / ${b.fills} | ${cell(sample || 'none')} | ${cell(r.notes)} | ${cell(r.worker)} | ${cell(String(r.recordedAt ?? '').slice(0, 10))} |`;
  }),
  '',
];
writeFileSync(`${root}CONSISTENCY.md`, lines.join('\n'));
console.log(`CONSISTENCY.md: ${runs.length} run(s)`);
