import type { Change, Operation, Row } from '../../core/change.js';
import { keyColumnsOf, oldRowOf, type EventTable, type TableCatalog, type TableInfo } from './identity.js';
import { keyFields, readMessage, type MessageJson } from './message-json.js';
import { eventTable, isReadConnector, type ReadConnector } from '../../lib/debezium-connectors.js';
import { binlogTextValue } from './binlog-values.js';
import { JsonNumber, textValue, type ColumnType, type FieldType } from './values.js';

export interface KafkaRecord {
  topic: string;
  partition: number;
  offset: string;
  key: Buffer | null;
  value: Buffer | null;
}

/** A change event read from its message, values not yet converted (that needs the table's types). */
export interface DebeziumEvent extends EventTable {
  /**
   * Whose event: PostgreSQL's connector, or MySQL's or MariaDB's (the binlog connectors, which send
   * the whole old row and whose values are decoded by their own rules).
   */
  connector: ReadConnector;
  op: Operation;
  before: Record<string, unknown> | null;
  after: Record<string, unknown> | null;
  fields: ReadonlyMap<string, FieldType>;
  /** The fields of the Kafka message key: the primary key, unless the connector was told otherwise. */
  messageKey: string[];
  /** source.ts_ms: when the change was made in the database. */
  commitTimeMs: number | null;
  position: string;
}

export type Decoded =
  | { kind: 'event'; event: DebeziumEvent }
  | { kind: 'skip'; why: 'tombstone' | 'heartbeat' | 'snapshot' | 'message' | 'transaction' | 'schema_change' }
  | { kind: 'malformed'; reason: string };

export type Parsed =
  | { kind: 'change'; change: Change; commitTimeMs: number | null }
  | Exclude<Decoded, { kind: 'event' }>;

const OPS: Record<string, Operation | 'snapshot' | 'message'> = {
  c: 'insert',
  r: 'snapshot',
  u: 'update',
  d: 'delete',
  t: 'truncate',
  m: 'message',
};

/** Debezium's heartbeat topics: `<topic.heartbeat.prefix>.<topic.prefix>`, the prefix `__debezium-heartbeat` by default. */
const HEARTBEAT_TOPIC = /^__debezium-heartbeat\./;
const HEARTBEAT_SCHEMA = 'io.debezium.connector.common.Heartbeat';

/**
 * One Debezium message (the PostgreSQL, MySQL or MariaDB connector), JSON converter, with or
 * without the schema envelope. Pure: the source turns `malformed` into a dead letter and keeps consuming. Whatever is
 * not a change event, a tombstone, a heartbeat, transaction metadata or a schema change is
 * malformed: a message skipped for looking empty could be a change the worker failed to read.
 */
export function decodeDebeziumRecord(record: KafkaRecord, options: { snapshotInvalidates: boolean }): Decoded {
  if (record.value === null || record.value.length === 0) return { kind: 'skip', why: 'tombstone' };
  let message: MessageJson;
  try {
    message = readMessage(record.value);
  } catch (err) {
    return { kind: 'malformed', reason: `value is not JSON: ${(err as Error).message}` };
  }
  const { payload, schema } = message;
  if (!isObject(payload)) return { kind: 'malformed', reason: 'value is not a JSON object' };
  const other = notAChange(payload, record.topic, schema.name);
  if (other !== undefined) return { kind: 'skip', why: other };
  const op = typeof payload['op'] === 'string' ? OPS[payload['op']] : undefined;
  if (op === undefined) return { kind: 'malformed', reason: `not a Debezium event: unknown or missing "op": ${JSON.stringify(String(payload['op']))}` };
  if (op === 'message') return { kind: 'skip', why: 'message' };
  if (op === 'snapshot' && !options.snapshotInvalidates) return { kind: 'skip', why: 'snapshot' };
  const source = payload['source'];
  if (!isObject(source)) return { kind: 'malformed', reason: 'missing source' };
  const { connector, namespace, table } = eventTable(source);
  if (!isReadConnector(connector)) {
    return { kind: 'malformed', reason: `an event of Debezium's ${connector} connector: only the PostgreSQL, MySQL and MariaDB connectors' events are read` };
  }
  const binlog = connector !== 'postgresql';
  if (typeof namespace !== 'string' || typeof table !== 'string') {
    return { kind: 'malformed', reason: binlog ? `an event of Debezium's ${connector} connector without source.db or source.table` : 'missing source.schema or source.table' };
  }
  const before = payload['before'] ?? null;
  const after = payload['after'] ?? null;
  if ((before !== null && !isObject(before)) || (after !== null && !isObject(after))) {
    return { kind: 'malformed', reason: '"before" or "after" is not an object or null' };
  }
  const operation: Operation = op === 'snapshot' ? 'insert' : op;
  if ((operation === 'insert' || operation === 'update') && after === null) return { kind: 'malformed', reason: `${operation} without "after"` };
  if (operation === 'delete' && before === null) return { kind: 'malformed', reason: 'delete without "before"' };
  const lsn = !binlog && source['lsn'] instanceof JsonNumber && /^\d+$/.test(source['lsn'].text) ? BigInt(source['lsn'].text) : null;
  return {
    kind: 'event',
    event: {
      schema: namespace,
      table,
      connector,
      lsn,
      op: operation,
      before: operation === 'update' || operation === 'delete' ? before : null,
      after: operation === 'insert' || operation === 'update' ? after : null,
      fields: schema.fields,
      messageKey: record.key === null || record.key.length === 0 ? [] : keyFields(record.key),
      commitTimeMs: source['ts_ms'] instanceof JsonNumber ? Number(source['ts_ms'].text) : null,
      position: `${record.topic}[${record.partition}]@${record.offset}`,
    },
  };
}

/**
 * The normalised change of an event: values in PostgreSQL's text form (or unknown), and for the
 * PostgreSQL connector the old row cut down to what the table's replica identity made real (`tables`
 * is asked only then).
 */
export function toChange(event: DebeziumEvent, tables: Pick<TableCatalog, 'info'>): Change {
  if (event.connector !== 'postgresql') return binlogChange(event);
  const table = tables.info(event);
  const before = rowOf(event.before, event.fields, table.columns);
  const after = rowOf(event.after, event.fields, table.columns);
  return {
    schema: event.schema,
    table: event.table,
    op: event.op,
    before: event.op === 'update' || event.op === 'delete' ? oldRowOf(before, after, table.identity, event.messageKey) : null,
    after,
    keyColumns: keyColumnsOf(table.identity, event.messageKey),
    // The LSN of a Debezium event is the change's, not its commit's, so it does not grow in
    // commit order across transactions: "set if greater" could miss a bump. INCR never does.
    version: null,
    position: event.position,
  };
}

/**
 * A MySQL or MariaDB event: the binlog carries the whole old row (Debezium refuses to start unless
 * binlog_row_image is FULL), so `before` is used as sent; values are decoded from the schema
 * envelope alone (there is no catalog to read their types from), and are unknown without it.
 */
function binlogChange(event: DebeziumEvent): Change {
  return {
    schema: event.schema,
    table: event.table,
    op: event.op,
    before: rowOf(event.before, event.fields, BINLOG),
    after: rowOf(event.after, event.fields, BINLOG),
    keyColumns: event.messageKey,
    // Binlog positions order commits on one server only, and Debezium follows a failover to another
    // server, whose positions are unrelated; GTID sequences order commits within one domain only.
    // Neither can be compared across everything that bumps one version key: INCR.
    version: null,
    position: event.position,
  };
}

/** Both steps, for one message whose table is known (tests, `explain`). */
export function parseDebeziumRecord(
  record: KafkaRecord,
  options: { snapshotInvalidates: boolean; table?: (event: EventTable) => TableInfo },
): Parsed {
  const decoded = decodeDebeziumRecord(record, options);
  if (decoded.kind !== 'event') return decoded;
  const table = options.table;
  const tables = { info: (event: EventTable): TableInfo => table?.(event) ?? { identity: { kind: 'message-key' } } };
  return { kind: 'change', change: toChange(decoded.event, tables), commitTimeMs: decoded.event.commitTimeMs };
}

/** Debezium's messages that carry no row change, recognised by their exact shape. */
function notAChange(payload: Record<string, unknown>, topic: string, schemaName: string | undefined): 'heartbeat' | 'transaction' | 'schema_change' | undefined {
  if (payload['op'] !== undefined) return undefined;
  const keys = Object.keys(payload);
  if ((HEARTBEAT_TOPIC.test(topic) || schemaName === HEARTBEAT_SCHEMA) && keys.length === 1 && payload['ts_ms'] instanceof JsonNumber) {
    return 'heartbeat';
  }
  // provide.transaction.metadata: BEGIN and END markers on `<topic.prefix>.transaction`.
  if ((payload['status'] === 'BEGIN' || payload['status'] === 'END') && typeof payload['id'] === 'string') return 'transaction';
  if (Array.isArray(payload['tableChanges']) && isObject(payload['source'])) return 'schema_change';
  return undefined;
}

/** rowOf's `columns` for MySQL and MariaDB events: their values are decoded by the binlog rules. */
const BINLOG = 'binlog';

/**
 * A row's values in text form, the unknown ones left out: PostgreSQL's decoded with the column types
 * of the catalog when read, MySQL's and MariaDB's (`BINLOG`) from the schema envelope alone.
 */
function rowOf(value: Record<string, unknown> | null, fields: ReadonlyMap<string, FieldType>, columns: ReadonlyMap<string, ColumnType> | undefined | typeof BINLOG): Row | null {
  if (value === null) return null;
  const row: Record<string, string | null | undefined> = Object.create(null);
  for (const column of Object.keys(value)) {
    const field = fields.get(column);
    const text = columns === BINLOG ? binlogTextValue(value[column], field) : textValue(value[column], field, columns?.get(column));
    if (text !== undefined) row[column] = text;
  }
  return row;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof JsonNumber);
}
