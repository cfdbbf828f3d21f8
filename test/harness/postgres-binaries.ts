// Finding the PostgreSQL server binaries, which Debian keeps off PATH.
import { execFileSync } from 'node:child_process';
import { readdirSync, realpathSync } from 'node:fs';
import { join } from 'node:path';
import { findOnPath, isExecutable } from './server-process.js';

const REQUIRED_BINARIES = ['initdb', 'postgres'];

function hasServerBinaries(dir: string): boolean {
  return REQUIRED_BINARIES.every((name) => isExecutable(join(dir, name)));
}

/**
 * Where initdb and postgres live: $PG_BINDIR, `pg_config --bindir`, the newest /usr/lib/postgresql/N/bin
 * (Debian keeps server binaries off PATH), then the directory of an initdb found on PATH.
 */
export function findPostgresBinDir(): string | undefined {
  const candidates: string[] = [];
  if (process.env.PG_BINDIR) candidates.push(process.env.PG_BINDIR);
  try {
    candidates.push(execFileSync('pg_config', ['--bindir'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim());
  } catch {
    // no pg_config (it comes with libpq-dev or postgresql-common, not always installed)
  }
  try {
    const versions = readdirSync('/usr/lib/postgresql')
      .filter((v) => /^\d+(\.\d+)?$/.test(v))
      .sort((a, b) => Number(b) - Number(a));
    for (const version of versions) candidates.push(`/usr/lib/postgresql/${version}/bin`);
  } catch {
    // not a Debian layout
  }
  const initdbOnPath = findOnPath('initdb');
  if (initdbOnPath !== undefined) candidates.push(join(realpathSync(initdbOnPath), '..'));
  return candidates.find(hasServerBinaries);
}

export function missingPostgresMessage(): string {
  return (
    'PostgreSQL server binaries (initdb, postgres) not found. Looked in $PG_BINDIR, `pg_config --bindir`, ' +
    '/usr/lib/postgresql/*/bin and PATH. Install them (Debian: apt-get install postgresql-15) or set PG_BINDIR.'
  );
}
