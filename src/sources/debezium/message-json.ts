import { JsonNumber, parseJsonExact, type FieldType } from './values.js';

/**
 * Reading a Debezium message's JSON fast, with the same result as `parseJsonExact` where the event
 * decoder looks. Two costs dominate a plain exact parse: the schema envelope (two thirds of a
 * typical message, the same bytes in every message of a table) and a reviver called for every
 * value. So:
 *
 * - `{"schema":S,"payload":P}` is split between S and P: at the end of a schema seen before
 *   (compared byte for byte), else at the first `,"payload":`. When S and P each parse on their
 *   own, the message is exactly the object { schema: S, payload: P } (a valid JSON text cannot be
 *   read two ways); otherwise the whole message is parsed. What the decoder needs of S is kept per
 *   distinct S, so a table's schema is parsed once.
 * - P is parsed by JSON.parse, and the numbers the decoder reads (exactPayload) are given their
 *   source text back: a number whose text is what String() gives for its double is exact. A safe
 *   integer is, when no number token of P has a fraction or an exponent; otherwise a scan of P
 *   lists the doubles of the number tokens that are not so (more than 15 digits, a fraction or
 *   exponent, -0). A number read whose double is on that list takes the exact parse of P instead:
 *   rare (an int8 past 2^53 in a row, a float written "1.50"), and always right.
 */

/** What the envelope's schema says that the decoder uses. */
export interface SchemaInfo {
  /** The types of before's and after's fields, by column. */
  fields: ReadonlyMap<string, FieldType>;
  /** The schema's name (heartbeats are recognised by it). */
  name: string | undefined;
}

export interface MessageJson {
  payload: unknown;
  schema: SchemaInfo;
}

const NO_SCHEMA: SchemaInfo = { fields: new Map(), name: undefined };
const HEAD = Buffer.from('{"schema":');
const SEPARATOR = Buffer.from(',"payload":');
const CLOSE = 0x7d; // }

/** Distinct schemas remembered; Debezium sends one per table and version, keys included. */
const SCHEMAS_KEPT = 64;

/** Schemas already parsed, most recently used first, each with its bytes as they appear in a message. */
class SchemaCache {
  /** Each schema's bytes with the separator after them, as they start a message. */
  private entries: { bytes: Buffer; info: SchemaInfo }[] = [];

  /**
   * The schema a message starts with (its bytes from `start`, then `,"payload":`), and where it
   * ends; undefined when none known. Saves searching for the separator through the schema.
   */
  find(message: Buffer, start: number): { info: SchemaInfo; end: number } | undefined {
    for (let i = 0; i < this.entries.length; i++) {
      const entry = this.entries[i]!;
      const end = start + entry.bytes.length;
      if (end > message.length || message.compare(entry.bytes, 0, entry.bytes.length, start, end) !== 0) continue;
      if (i > 0) {
        this.entries.splice(i, 1);
        this.entries.unshift(entry);
      }
      return { info: entry.info, end: end - SEPARATOR.length };
    }
    return undefined;
  }

  /** The schema at [start, end) of the message, followed by the separator. */
  add(message: Buffer, start: number, end: number, info: SchemaInfo): void {
    // A copy: the message is a slice of a whole fetch response, which must not be kept alive.
    this.entries.unshift({ bytes: Buffer.from(message.subarray(start, end + SEPARATOR.length)), info });
    if (this.entries.length > SCHEMAS_KEPT) this.entries.pop();
  }
}

const schemas = new SchemaCache();

/**
 * A message value: its payload (the whole value without an envelope) with exact numbers where the
 * decoder reads them, and what its schema says. Throws JSON.parse's SyntaxError for a value that
 * is not JSON.
 */
export function readMessage(value: Buffer): MessageJson {
  const split = splitEnvelope(value);
  if (split !== undefined) {
    const payload = parseOrUndefined(split.payloadText);
    if (payload !== undefined) return { payload: exactPayload(payload, split.payloadText) ?? parseJsonExact(split.payloadText), schema: split.schema };
  }
  const text = value.toString('utf8');
  const message = unwrap(JSON.parse(text));
  const payload = exactPayload(message.payload, text);
  return payload !== undefined ? { payload, schema: message.schema } : unwrap(parseJsonExact(text));
}

/** The field names of a message key's payload (the key's columns); [] for a key that is not a JSON object. */
export function keyFields(key: Buffer): string[] {
  let payload: unknown;
  const split = splitEnvelope(key);
  if (split !== undefined) payload = parseOrUndefined(split.payloadText);
  if (payload === undefined) {
    try {
      payload = unwrap(JSON.parse(key.toString('utf8'))).payload;
    } catch {
      return [];
    }
  }
  return isObject(payload) ? Object.keys(payload) : [];
}

/** The schema and payload text of `{"schema":S,"payload":P}` whose S is known or parses as an object. */
function splitEnvelope(value: Buffer): { schema: SchemaInfo; payloadText: string } | undefined {
  const end = value.length - 1;
  if (end < HEAD.length + SEPARATOR.length || value[end] !== CLOSE || value.compare(HEAD, 0, HEAD.length, 0, HEAD.length) !== 0) return undefined;
  const known = schemas.find(value, HEAD.length);
  if (known !== undefined) return { schema: known.info, payloadText: value.toString('utf8', known.end + SEPARATOR.length, end) };
  const at = value.indexOf(SEPARATOR, HEAD.length);
  if (at < 0) return undefined;
  // The first `,"payload":` may be inside S (a nested key of that name): S then does not parse.
  const parsed = parseOrUndefined(value.toString('utf8', HEAD.length, at));
  if (!isObject(parsed)) return undefined;
  const schema = schemaInfo(parsed);
  schemas.add(value, HEAD.length, at, schema);
  return { schema, payloadText: value.toString('utf8', at + SEPARATOR.length, end) };
}

function parseOrUndefined(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** `{ schema, payload }` with an object schema is the envelope; anything else is a bare payload. */
export function unwrap(json: unknown): MessageJson {
  if (!isObject(json) || !('payload' in json) || !isObject(json['schema'])) return { payload: json, schema: NO_SCHEMA };
  return { payload: json['payload'], schema: schemaInfo(json['schema']) };
}

function schemaInfo(schema: Record<string, unknown>): SchemaInfo {
  const fields = new Map<string, FieldType>();
  const schemaFields = schema['fields'];
  if (Array.isArray(schemaFields)) {
    for (const f of schemaFields) {
      if (!isObject(f) || (f['field'] !== 'after' && f['field'] !== 'before') || !Array.isArray(f['fields'])) continue;
      for (const column of f['fields']) {
        if (isObject(column) && typeof column['field'] === 'string') fields.set(column['field'], fieldType(column));
      }
    }
  }
  return { fields, name: typeof schema['name'] === 'string' ? schema['name'] : undefined };
}

function fieldType(column: Record<string, unknown>): FieldType {
  const parameters = column['parameters'];
  const integer = (name: string): number | undefined =>
    isObject(parameters) && typeof parameters[name] === 'string' && /^-?\d+$/.test(parameters[name]) ? Number(parameters[name]) : undefined;
  const scale = integer('scale');
  const length = integer('length');
  const sourceType = isObject(parameters) ? parameters['__debezium.source.column.type'] : undefined;
  return {
    ...(typeof column['type'] === 'string' ? { type: column['type'] } : {}),
    ...(typeof column['name'] === 'string' ? { name: column['name'] } : {}),
    ...(scale !== undefined ? { scale } : {}),
    ...(length !== undefined ? { length } : {}),
    ...(typeof sourceType === 'string' ? { sourceType } : {}),
  };
}

/**
 * A number token that may not read back as its own text: more than 15 digits before any point
 * (past what a double holds exactly), a fraction or an exponent, or a negative zero. A token in
 * JSON follows `:`, `,` or `[` and optional whitespace; a match inside a string only lists one
 * double too many, which costs an exact parse at worst.
 */
const SUSPECT_NUMBER = /[:,[][ \t\n\r]*(?=-?\d{16}|-?\d+[.eE]|-0)(-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)/g;

/** A number token with a fraction or an exponent (or something in a string that looks like one). */
const FRACTION_OR_EXPONENT = /[:,[][ \t\n\r]*-?\d+[.eE]/;

/** The doubles of the number tokens of `text` whose text String() does not give back; null when none. */
export function inexactNumbers(text: string): Set<number> | null {
  let found: Set<number> | null = null;
  SUSPECT_NUMBER.lastIndex = 0;
  for (let m = SUSPECT_NUMBER.exec(text); m !== null; m = SUSPECT_NUMBER.exec(text)) {
    const token = m[1]!;
    const n = Number(token);
    if (String(n) !== token) (found ??= new Set()).add(n);
  }
  return found;
}

/** The source text of numbers JSON.parse read from `text`, as far as their double tells it. */
class NumberTexts {
  private fractions: boolean | undefined;
  private inexact: Set<number> | null | undefined;

  constructor(private readonly text: string) {}

  /** The text `n` was read from, or undefined when another text could have given the same double. */
  textOf(n: number): string | undefined {
    // The usual case, settled without the scan: a safe integer is written as its digits (more
    // digits would not round to a safe integer), unless a token with a fraction or an exponent
    // ("5.0", "5e0") could be the one; -0 is never written "0".
    if (Number.isSafeInteger(n) && !Object.is(n, -0)) {
      this.fractions ??= FRACTION_OR_EXPONENT.test(this.text);
      if (!this.fractions) return String(n);
    }
    this.inexact ??= inexactNumbers(this.text);
    return this.inexact?.has(n) ? undefined : String(n);
  }
}

/**
 * The numbers of a JSON.parse'd payload that the event decoder reads, made JsonNumbers with their
 * source text, in place: every number under `before` and `after`, `source.lsn`, `source.ts_ms` and
 * `ts_ms`. Other numbers (ts_us, ts_ns, txId...) stay JavaScript numbers, possibly rounded: the
 * decoder reads none of them, and one it comes to read must be added here. Undefined when a number
 * read could have had another text (then the payload needs parseJsonExact).
 */
export function exactPayload(payload: unknown, text: string): unknown {
  if (!isObject(payload)) return payload;
  const texts = new NumberTexts(text);
  if (!exactMember(payload, 'before', texts) || !exactMember(payload, 'after', texts) || !exactMember(payload, 'ts_ms', texts, false)) return undefined;
  const source = payload['source'];
  if (isObject(source) && (!exactMember(source, 'lsn', texts, false) || !exactMember(source, 'ts_ms', texts, false))) return undefined;
  return payload;
}

/** Replaces `container[key]` by its exact form (deep unless told otherwise); false when it has none. */
function exactMember(container: Record<string, unknown> | unknown[], key: string | number, texts: NumberTexts, deep = true): boolean {
  const value = (container as Record<string | number, unknown>)[key];
  if (typeof value === 'number') {
    const text = texts.textOf(value);
    if (text === undefined) return false;
    setMember(container, key, new JsonNumber(text));
    return true;
  }
  if (!deep || typeof value !== 'object' || value === null) return true;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) if (!exactMember(value, i, texts)) return false;
    return true;
  }
  for (const k in value) if (!exactMember(value as Record<string, unknown>, k, texts)) return false;
  return true;
}

function setMember(container: Record<string, unknown> | unknown[], key: string | number, value: unknown): void {
  // JSON.parse makes "__proto__" an own property; assigning to it would set the prototype instead.
  if (key === '__proto__') Object.defineProperty(container, key, { value, writable: true, enumerable: true, configurable: true });
  else (container as Record<string | number, unknown>)[key] = value;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof JsonNumber);
}
