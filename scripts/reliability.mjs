#!/usr/bin/env node
// Regenerates RELIABILITY.md from the fault scenarios' results (test/faults/results/*.json).
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../', import.meta.url));
const dir = `${root}test/faults/results/`;
let files = [];
try {
  files = readdirSync(dir).filter((f) => f.endsWith('.json'));
} catch {
  // no results yet
}
const results = files
  .map((f) => JSON.parse(readFileSync(dir + f, 'utf8')))
  .sort((a, b) => String(a.id).localeCompare(String(b.id), 'en', { numeric: true }));

const cell = (v) => (v === null || v === undefined ? '–' : String(v).replaceAll('|', '\\|'));
const lines = [
  '# Reliability',
  '',
  'What the fault scenarios of `test/faults/` measured in their last run (`npm run test:faults`, then',
  '`npm run reliability` regenerates this file). Every scenario is an ordinary test with real processes:',
  'a real PostgreSQL, a real Redis and the built worker, killed, stopped and restarted for real.',
  '"Lost" counts changes whose keys were never invalidated; it must be 0 and the test fails otherwise.',
  '"Duplicated" counts key operations applied more than once (replays after a fault, which the guarantees',
  'allow).',
  '',
  '| # | scenario | runs | changes | lost | duplicated | recovery (s) | notes | recorded |',
  '|---|---|---|---|---|---|---|---|---|',
  ...results.map(
    (r) =>
      `| ${cell(r.id)} | ${cell(r.title)} | ${cell(r.runs)} | ${cell(r.changes)} | ${cell(r.lost)} | ${cell(r.duplicated)} | ${cell(r.recoverySeconds)} | ${cell(r.notes)} | ${cell(String(r.recordedAt ?? '').slice(0, 10))} |`,
  ),
  '',
];
writeFileSync(`${root}RELIABILITY.md`, lines.join('\n'));
console.log(`RELIABILITY.md: ${results.length} scenario(s)`);
