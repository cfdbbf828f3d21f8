/**
 * Debezium's connectors whose events the worker reads, and where each names a table: shared by the
 * Debezium source and `check`.
 */

/** The connectors that read a MySQL-protocol binary log; their events share one shape. */
export type BinlogConnector = 'mysql' | 'mariadb';
export type ReadConnector = 'postgresql' | BinlogConnector;

const BINLOG_CONNECTORS: ReadonlySet<string> = new Set<BinlogConnector>(['mysql', 'mariadb']);

export function isBinlogConnector(connector: string): connector is BinlogConnector {
  return BINLOG_CONNECTORS.has(connector);
}

export function isReadConnector(connector: string): connector is ReadConnector {
  return connector === 'postgresql' || isBinlogConnector(connector);
}

/**
 * An event's `source.connector` (PostgreSQL's when absent) and the name the rules give the table's
 * schema: `source.schema` for PostgreSQL, `source.db` for MySQL and MariaDB (a database is their
 * schema). The namespace and table are whatever the event holds: the caller checks they are strings.
 */
export function eventTable(source: Readonly<Record<string, unknown>>): { connector: string; namespace: unknown; table: unknown } {
  const connector = typeof source['connector'] === 'string' ? source['connector'] : 'postgresql';
  return { connector, namespace: isBinlogConnector(connector) ? source['db'] : source['schema'], table: source['table'] };
}
