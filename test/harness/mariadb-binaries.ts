// Finding the MariaDB server binaries; apart from mariadb.ts so that servicesMissing() can ask without
// starting anything (or loading mysql2).
import { join } from 'node:path';
import { findOnPath, isExecutable } from './server-process.js';

export interface MariaDbBinaries {
  /** The server, mariadbd. */
  server: string;
  /** The script that creates a data dir's system tables, mariadb-install-db. */
  installDb: string;
}

/** The first executable `name` in $MARIADB_BIN_DIR, PATH, /usr/sbin or /usr/bin (Debian puts mariadbd in /usr/sbin, off a user's PATH). */
function findBinary(name: string): string | undefined {
  const fromEnv = process.env.MARIADB_BIN_DIR;
  if (fromEnv) {
    // A MariaDB tarball keeps mariadbd in bin/ and mariadb-install-db in scripts/; accept both beside bin/.
    const candidate = [join(fromEnv, name), join(fromEnv, '..', 'scripts', name)].find(isExecutable);
    if (candidate !== undefined) return candidate;
  }
  return findOnPath(name) ?? ['/usr/sbin', '/usr/bin', '/usr/local/sbin', '/usr/local/bin'].map((dir) => join(dir, name)).find(isExecutable);
}

/** mariadbd and mariadb-install-db, or undefined when either is missing. */
export function findMariaDbBinaries(): MariaDbBinaries | undefined {
  const server = findBinary('mariadbd');
  const installDb = findBinary('mariadb-install-db');
  return server === undefined || installDb === undefined ? undefined : { server, installDb };
}

export function missingMariaDbMessage(): string {
  return (
    'MariaDB server binaries (mariadbd, mariadb-install-db) not found in $MARIADB_BIN_DIR, PATH, /usr/sbin or /usr/bin. ' +
    'Install them (Debian: apt-get install mariadb-server; the service need not run) or set MARIADB_BIN_DIR.'
  );
}
