import { PgoutputPlugin, type Pgoutput } from 'pg-logical-replication';
import type { Change, Row } from '../../core/change.js';
import { formatLsn, lsnFromBigInt, type Lsn } from '../../core/lsn.js';
import { DecodeError, toError } from '../../errors.js';
import { pgTimeToMs } from './protocol.js';
import type { MappedTable } from './setup.js';

/** Where decoded changes go: in commit order, each transaction closed by its commit position. */
export interface DecodedSink {
  /** A transaction starts: its 32-bit id, and its commit position as its changes carry it. */
  begin?(xid: number, position: string): void;
  change(change: Change, commitTimeMs: number): void;
  commit(endLsn: Lsn, commitTimeMs: number): void;
  /** A mapped table appears under another name than its rules give (renamed since, or before). */
  renamed?(mappedName: string, streamName: string): void;
  /** A table's description arrived (on each connection, and after every schema change): its columns as streamed. */
  described?(schema: string, table: string, columns: readonly string[]): void;
}

const keepText = (text: string): string => text;
/** PostgreSQL's boolean output is t/f; keys use true/false (SPEC §4), as SQL literals read. */
const BOOL_OID = 16;
const boolText = (text: string): string => (text === 't' ? 'true' : text === 'f' ? 'false' : text);

/**
 * Turns pgoutput (protocol version 1) messages into normalised changes. Values stay in their
 * PostgreSQL text form: the library would otherwise run pg's global type parsers over them
 * (int8 to string, timestamp to a Date in the process's time zone), and keys must not depend on
 * either. A value Postgres did not send stays absent, which the rules treat as unknown.
 */
export class PgoutputDecoder {
  private readonly plugin = new PgoutputPlugin({ protoVersion: 1, publicationNames: [] });
  private txn: { version: bigint; position: string; commitTimeMs: number } | null = null;
  /** Per relation: the name rules know it by, and the columns that identify a row. */
  private readonly relations = new Map<number, { schema: string; table: string; keyColumns: readonly string[] }>();

  /**
   * @param mappedTables the mapped tables by OID, as setup found them: their primary key (under
   * REPLICA IDENTITY FULL pgoutput flags every column as a key column, and dead letters must still
   * show only the key), and their name, to notice a mapped table renamed while streaming.
   */
  constructor(private readonly mappedTables: ReadonlyMap<number, MappedTable> = new Map()) {}

  get inTransaction(): boolean {
    return this.txn !== null;
  }

  decode(payload: Buffer, sink: DecodedSink): void {
    // BEGIN and COMMIT, one each per transaction, are read here from their fixed layout: the
    // library would format their LSNs as text and their times as BigInts, all unused.
    if (payload[0] === 0x42 /* B */ && payload.length >= 21) return this.begin(payload, sink);
    if (payload[0] === 0x43 /* C */ && payload.length >= 26) return this.commit(payload, sink);
    let msg: Pgoutput.Message;
    try {
      msg = this.plugin.parse(payload);
    } catch (err) {
      throw new DecodeError(`cannot decode pgoutput message: ${toError(err).message}`, err);
    }
    switch (msg.tag) {
      case 'begin':
      case 'commit':
        throw new DecodeError(`${msg.tag.toUpperCase()} message too short (${payload.length} bytes)`);
      case 'relation':
        // Relation messages arrive before the first change of a table on each connection and
        // after every schema change; the parser reads column parsers from this object.
        for (const column of msg.columns) column.parser = column.typeOid === BOOL_OID ? boolText : keepText;

        this.relations.set(msg.relationOid, this.describe(msg, sink));
        return;
      case 'insert':
        return this.emit(sink, msg.relation, 'insert', null, msg.new);
      case 'update':
        return this.emit(sink, msg.relation, 'update', oldRowOfUpdate(msg), msg.new);
      case 'delete':
        return this.emit(sink, msg.relation, 'delete', msg.old ?? msg.key ?? {}, null);
      case 'truncate':
        for (const relation of msg.relations) {
          if (relation === undefined) throw new DecodeError('TRUNCATE of a relation never described');
          this.emit(sink, relation, 'truncate', null, null);
        }
        return;
      case 'origin':
      case 'type':
      case 'message':
        return;
    }
  }

  /** 'B', final (commit) LSN, commit time (µs since 2000-01-01), xid. */
  private begin(payload: Buffer, sink: DecodedSink): void {
    const commitLsn = lsnFromBigInt(payload.readBigUInt64BE(1));
    if (commitLsn === 0n) throw new DecodeError('BEGIN without a commit LSN');
    this.txn = { version: commitLsn, position: formatLsn(commitLsn), commitTimeMs: pgTimeToMs(payload, 9) };
    sink.begin?.(payload.readUInt32BE(17), this.txn.position);
  }

  /** 'C', flags, commit LSN, end LSN, commit time. */
  private commit(payload: Buffer, sink: DecodedSink): void {
    const txn = this.requireTxn('COMMIT');
    this.txn = null;
    const endLsn = lsnFromBigInt(payload.readBigUInt64BE(10));
    if (endLsn === 0n) throw new DecodeError('COMMIT without an end LSN');
    sink.commit(endLsn, txn.commitTimeMs);
  }

  /**
   * A mapped table is known by its OID, so its rules follow it under another name: after a rename
   * (its changes would otherwise arrive under a name no rule maps, and be ignored without a word),
   * and when older changes are replayed under the name it had then.
   */
  private describe(msg: Pgoutput.MessageRelation, sink: DecodedSink) {
    const mapped = this.mappedTables.get(msg.relationOid);
    if (mapped !== undefined && (mapped.schema !== msg.schema || mapped.table !== msg.name)) {
      sink.renamed?.(`${mapped.schema}.${mapped.table}`, `${msg.schema}.${msg.name}`);
    }
    const schema = mapped?.schema ?? msg.schema;
    const table = mapped?.table ?? msg.name;
    sink.described?.(schema, table, msg.columns.map((c) => c.name));
    return {
      schema,
      table,
      keyColumns:
        msg.replicaIdentity === 'full'
          ? (mapped?.primaryKey ?? []).filter((c) => msg.columns.some((col) => col.name === c))
          : msg.keyColumns,
    };
  }

  private emit(
    sink: DecodedSink,
    relation: Pgoutput.MessageRelation,
    op: Change['op'],
    before: Row | null,
    after: Row | null,
  ): void {
    const txn = this.requireTxn(op.toUpperCase());
    sink.change(
      {
        schema: this.relations.get(relation.relationOid)?.schema ?? relation.schema,
        table: this.relations.get(relation.relationOid)?.table ?? relation.name,
        op,
        before,
        after,
        keyColumns: this.relations.get(relation.relationOid)?.keyColumns ?? [],
        version: txn.version,
        position: txn.position,
      },
      txn.commitTimeMs,
    );
  }

  private requireTxn(what: string): NonNullable<PgoutputDecoder['txn']> {
    if (this.txn === null) throw new DecodeError(`${what} outside a transaction`);
    return this.txn;
  }
}

/**
 * The old row of an update: the whole row with REPLICA IDENTITY FULL; the old key when the key
 * changed; otherwise Postgres sends nothing, which means the key did not change, so the old key
 * columns equal the new ones and every other old value is unknown.
 */
function oldRowOfUpdate(msg: Pgoutput.MessageUpdate): Row {
  if (msg.old !== null) return msg.old;
  if (msg.key !== null) return msg.key;
  const row: Record<string, string | null | undefined> = Object.create(null);
  for (const column of msg.relation.keyColumns) row[column] = msg.new[column];
  return row;
}
