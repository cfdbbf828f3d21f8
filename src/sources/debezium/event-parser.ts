import type { Change, Operation, Row } from '../../core/change.js';
import { JsonNumber, parseJsonExact, textValue, type FieldType } from './values.js';

export interface KafkaRecord {
  topic: string;
  partition: number;
  offset: string;
  key: Buffer | null;
  value: Buffer | null;
}

export type Parsed =
  | { kind: 'change'; change: Change; /** source.ts_ms: when the change was made in the database. */ commitTimeMs: number | null }
  | { kind: 'skip'; why: 'tombstone' | 'heartbeat' | 'snapshot' | 'message' }
  | { kind: 'malformed'; reason: string };

const OPS: Record<string, Operation | 'snapshot' | 'message'> = {
  c: 'insert',
  r: 'snapshot',
  u: 'update',
  d: 'delete',
  t: 'truncate',
  m: 'message',
};

/**
 * One Debezium (PostgreSQL connector) change event, JSON converter, with or without the schema
 * envelope, to the same normalised change the Postgres source produces. Pure: the source turns
 * `malformed` into a dead letter and keeps consuming.
 */
export function parseDebeziumRecord(record: KafkaRecord, options: { snapshotInvalidates: boolean }): Parsed {
  if (record.value === null || record.value.length === 0) return { kind: 'skip', why: 'tombstone' };
  let json: unknown;
  try {
    json = parseJsonExact(record.value.toString('utf8'));
  } catch (err) {
    return { kind: 'malformed', reason: `value is not JSON: ${(err as Error).message}` };
  }
  const { payload, fields } = unwrap(json);
  if (!isObject(payload)) return { kind: 'malformed', reason: 'value is not a JSON object' };
  if (payload['op'] === undefined && payload['source'] === undefined && Object.keys(payload).every((k) => k === 'ts_ms')) {
    return { kind: 'skip', why: 'heartbeat' };
  }
  const op = typeof payload['op'] === 'string' ? OPS[payload['op']] : undefined;
  if (op === undefined) return { kind: 'malformed', reason: `unknown or missing "op": ${JSON.stringify(String(payload['op']))}` };
  if (op === 'message') return { kind: 'skip', why: 'message' };
  if (op === 'snapshot' && !options.snapshotInvalidates) return { kind: 'skip', why: 'snapshot' };
  const source = payload['source'];
  if (!isObject(source) || typeof source['schema'] !== 'string' || typeof source['table'] !== 'string') {
    return { kind: 'malformed', reason: 'missing source.schema or source.table' };
  }
  const keyColumns = keyColumnsOf(record.key);
  const before = rowOf(payload['before'], fields);
  const after = rowOf(payload['after'], fields);
  if (before === 'bad' || after === 'bad') return { kind: 'malformed', reason: '"before" or "after" is not an object or null' };
  const operation: Operation = op === 'snapshot' ? 'insert' : op;
  if ((operation === 'insert' || operation === 'update') && after === null) {
    return { kind: 'malformed', reason: `${operation} without "after"` };
  }
  if (operation === 'delete' && before === null) return { kind: 'malformed', reason: 'delete without "before"' };

  return {
    kind: 'change',
    change: {
      schema: source['schema'],
      table: source['table'],
      op: operation,
      before: operation === 'update' || operation === 'delete' ? oldRow(before, after, keyColumns) : null,
      after: operation === 'insert' || operation === 'update' ? after : null,
      keyColumns,
      // The LSN of a Debezium event is the change's, not its commit's, so it does not grow in
      // commit order across transactions: "set if greater" could miss a bump. INCR never does.
      version: null,
      position: `${record.topic}[${record.partition}]@${record.offset}`,
    },
    commitTimeMs: source['ts_ms'] instanceof JsonNumber ? Number(source['ts_ms'].text) : null,
  };
}

/**
 * The old row. Without REPLICA IDENTITY FULL, Debezium sends no "before" for an update (the key
 * did not change: a key change comes as a delete and a create) and, for a delete, the key with
 * every other column null. Those nulls mean "not sent", so they are unknown, never NULL; a row
 * with any non-key value set is a full old row, whose nulls are real.
 */
function oldRow(before: Row | null, after: Row | null, keyColumns: readonly string[]): Row {
  const key = new Set(keyColumns);
  const source = before ?? after ?? {};
  const full = before !== null && Object.entries(before).some(([c, v]) => !key.has(c) && v !== null);
  if (full) return before!;
  const row: Record<string, string | null | undefined> = Object.create(null);
  for (const column of keyColumns) row[column] = source[column];
  return row;
}

function unwrap(json: unknown): { payload: unknown; fields: Map<string, FieldType> } {
  const fields = new Map<string, FieldType>();
  if (isObject(json) && 'payload' in json && 'schema' in json && isObject(json['schema'])) {
    const schemaFields = json['schema']['fields'];
    if (Array.isArray(schemaFields)) {
      for (const f of schemaFields) {
        if (!isObject(f) || (f['field'] !== 'after' && f['field'] !== 'before') || !Array.isArray(f['fields'])) continue;
        for (const column of f['fields']) {
          if (isObject(column) && typeof column['field'] === 'string') fields.set(column['field'], fieldType(column));
        }
      }
    }
    return { payload: json['payload'], fields };
  }
  return { payload: json, fields };
}

function fieldType(column: Record<string, unknown>): FieldType {
  const parameters = column['parameters'];
  const scale = isObject(parameters) && typeof parameters['scale'] === 'string' && /^-?\d+$/.test(parameters['scale']) ? Number(parameters['scale']) : undefined;
  return {
    ...(typeof column['type'] === 'string' ? { type: column['type'] } : {}),
    ...(typeof column['name'] === 'string' ? { name: column['name'] } : {}),
    ...(scale !== undefined ? { scale } : {}),
  };
}

function rowOf(value: unknown, fields: Map<string, FieldType>): Row | null | 'bad' {
  if (value === null || value === undefined) return null;
  if (!isObject(value)) return 'bad';
  const row: Record<string, string | null | undefined> = Object.create(null);
  for (const [column, v] of Object.entries(value)) {
    const text = textValue(v, fields.get(column));
    if (text !== undefined) row[column] = text;
  }
  return row;
}

function keyColumnsOf(key: Buffer | null): string[] {
  if (key === null || key.length === 0) return [];
  try {
    const { payload } = unwrap(parseJsonExact(key.toString('utf8')));
    return isObject(payload) ? Object.keys(payload) : [];
  } catch {
    return [];
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof JsonNumber);
}
