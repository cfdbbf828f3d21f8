// Debezium PostgreSQL connector change events for public.orders, byte for byte as Kafka Connect's
// JsonConverter writes them with schemas.enable=true (its default) and the connector's defaults
// (decimal.handling.mode=precise, time.precision.mode=adaptive, binary.handling.mode=bytes): a
// compact `{"schema":...,"payload":...}`, fields in schema order, nulls written out. The layout was
// taken from the messages Debezium 3.0.8 sent for a table of these column types (see
// test/harness/kafka.ts for the stack that produced them): before/after, source (with ts_us and
// ts_ns, whose nanoseconds go past 2^53), transaction, op, ts_ms, ts_us, ts_ns.
//
// CREATE TABLE public.orders (
//   id int4 PRIMARY KEY, account_id int8 NOT NULL, sku text NOT NULL, title text,
//   price numeric(12,2), created_at timestamp
// )  -- REPLICA IDENTITY DEFAULT

export const ORDERS_TABLE = 'public.orders';

export interface Order {
  id: number;
  accountId: number;
  sku: string;
  title: string;
  /** price × 100: numeric(12,2)'s unscaled value. */
  priceCents: number;
  /** timestamp: µs since the epoch. */
  createdAtMicros: number;
}

const COLUMNS_SCHEMA = [
  '{"type":"int32","optional":false,"field":"id"}',
  '{"type":"int64","optional":false,"field":"account_id"}',
  '{"type":"string","optional":false,"field":"sku"}',
  '{"type":"string","optional":true,"field":"title"}',
  '{"type":"bytes","optional":true,"name":"org.apache.kafka.connect.data.Decimal","version":1,"parameters":{"scale":"2","connect.decimal.precision":"12"},"field":"price"}',
  '{"type":"int64","optional":true,"name":"io.debezium.time.MicroTimestamp","version":1,"field":"created_at"}',
].join(',');

const SOURCE_SCHEMA =
  '{"type":"struct","fields":[{"type":"string","optional":false,"field":"version"},{"type":"string","optional":false,"field":"connector"},' +
  '{"type":"string","optional":false,"field":"name"},{"type":"int64","optional":false,"field":"ts_ms"},' +
  '{"type":"string","optional":true,"name":"io.debezium.data.Enum","version":1,"parameters":{"allowed":"true,first,first_in_data_collection,last_in_data_collection,last,false,incremental"},"default":"false","field":"snapshot"},' +
  '{"type":"string","optional":false,"field":"db"},{"type":"string","optional":true,"field":"sequence"},{"type":"int64","optional":true,"field":"ts_us"},' +
  '{"type":"int64","optional":true,"field":"ts_ns"},{"type":"string","optional":false,"field":"schema"},{"type":"string","optional":false,"field":"table"},' +
  '{"type":"int64","optional":true,"field":"txId"},{"type":"int64","optional":true,"field":"lsn"},{"type":"int64","optional":true,"field":"xmin"}],' +
  '"optional":false,"name":"io.debezium.connector.postgresql.Source","field":"source"}';

const TRANSACTION_SCHEMA =
  '{"type":"struct","fields":[{"type":"string","optional":false,"field":"id"},{"type":"int64","optional":false,"field":"total_order"},' +
  '{"type":"int64","optional":false,"field":"data_collection_order"}],"optional":true,"name":"event.block","version":1,"field":"transaction"}';

/** Topic `<prefix>.public.orders`, as the connector names it. */
export function ordersTopic(prefix: string): string {
  return `${prefix}.${ORDERS_TABLE}`;
}

/** Writes the key and value of each change as the connector with topic.prefix `prefix` would. */
export class OrdersEventWriter {
  private readonly valueSchema: string;
  private readonly keySchema: string;
  private lsn = 26_512_272;
  private txId = 728;

  constructor(
    private readonly prefix: string,
    private readonly database: string,
  ) {
    const row = (field: 'before' | 'after') =>
      `{"type":"struct","fields":[${COLUMNS_SCHEMA}],"optional":true,"name":"${prefix}.public.orders.Value","field":"${field}"}`;
    this.valueSchema =
      `{"type":"struct","fields":[${row('before')},${row('after')},${SOURCE_SCHEMA},${TRANSACTION_SCHEMA},` +
      '{"type":"string","optional":false,"field":"op"},{"type":"int64","optional":true,"field":"ts_ms"},' +
      '{"type":"int64","optional":true,"field":"ts_us"},{"type":"int64","optional":true,"field":"ts_ns"}],' +
      `"optional":false,"name":"${prefix}.public.orders.Envelope","version":2}`;
    this.keySchema = `{"type":"struct","fields":[{"type":"int32","optional":false,"field":"id"}],"optional":false,"name":"${prefix}.public.orders.Key"}`;
  }

  key(id: number): string {
    return `{"schema":${this.keySchema},"payload":{"id":${id}}}`;
  }

  /**
   * One change: c (after only), u (after only: REPLICA IDENTITY DEFAULT and an unchanged key, so
   * Debezium sends no before) or d (before holding the key, the other columns filled in by
   * Debezium: '' for NOT NULL text, 0, null).
   */
  value(op: 'c' | 'u' | 'd', order: Order, commitMs: number): string {
    const before = op === 'd' ? `{"id":${order.id},"account_id":0,"sku":"","title":null,"price":null,"created_at":null}` : 'null';
    const after = op === 'd' ? 'null' : rowJson(order);
    const previousLsn = this.lsn;
    this.lsn += 384;
    this.txId += 1;
    const sourceUs = commitMs * 1000 + 215;
    const eventMs = commitMs + 39;
    const eventUs = eventMs * 1000 + 72;
    const source =
      `{"version":"3.0.8.Final","connector":"postgresql","name":"${this.prefix}","ts_ms":${commitMs},"snapshot":"false","db":"${this.database}",` +
      `"sequence":"[\\"${previousLsn}\\",\\"${this.lsn}\\"]","ts_us":${sourceUs},"ts_ns":${sourceUs}000,"schema":"public","table":"orders",` +
      `"txId":${this.txId},"lsn":${this.lsn},"xmin":null}`;
    const payload =
      `{"before":${before},"after":${after},"source":${source},"transaction":null,"op":"${op}",` +
      `"ts_ms":${eventMs},"ts_us":${eventUs},"ts_ns":${eventUs}${String(556 + (order.id % 400)).padStart(3, '0')}}`;
    return `{"schema":${this.valueSchema},"payload":${payload}}`;
  }
}

function rowJson(o: Order): string {
  return (
    `{"id":${o.id},"account_id":${o.accountId},"sku":${JSON.stringify(o.sku)},"title":${JSON.stringify(o.title)},` +
    `"price":"${decimalBytes(o.priceCents)}","created_at":${o.createdAtMicros}}`
  );
}

/** A Decimal's unscaled value as Connect writes it: minimal big-endian two's complement, base64. */
export function decimalBytes(unscaled: number): string {
  let n = BigInt(unscaled);
  const bytes: number[] = [];
  do {
    bytes.unshift(Number(n & 0xffn));
    n >>= 8n;
  } while (!((n === 0n && (bytes[0]! & 0x80) === 0) || (n === -1n && (bytes[0]! & 0x80) !== 0)));
  return Buffer.from(bytes).toString('base64');
}

const TITLES = ['Blue ceramic mug, 350 ml', 'Recycled paper notebook A5 (ruled)', 'Stainless steel bottle 0.75 l', 'Desk lamp with dimmer — warm white'];

/** A plausible row for an id (deterministic, so every run produces the same events). */
export function orderFor(id: number): Order {
  const createdMs = Date.UTC(2024, 1, 29, 12, 34, 56) + id * 1_003;
  return {
    id,
    accountId: 4_000_000_000 + ((id * 7_919) % 250_000),
    sku: `SKU-${String(id).padStart(8, '0')}`,
    title: TITLES[id % TITLES.length]!,
    priceCents: 99 + ((id * 3_301) % 1_000_000),
    createdAtMicros: createdMs * 1000 + (id % 1000),
  };
}

/** The operation of id's one change: inserts, updates and deletes, in the proportions of a busy table. */
export function opFor(id: number): 'c' | 'u' | 'd' {
  const r = id % 10;
  return r === 0 ? 'd' : r <= 2 ? 'c' : 'u';
}
