import type { RuleSet } from '../../core/rules.js';
import { tableKey } from '../../core/rules.js';
import { eventTable, isBinlogConnector, isReadConnector } from '../../lib/debezium-connectors.js';
import type { SampledMessage, TopicSamples } from '../../lib/kafka-topics.js';
import { fail, listing, ok, plural, warn, type CheckLine } from './report.js';

/** What `check` makes of one message: a change event's connector and table, or what else it is. */
export type MessageKind =
  | { kind: 'event'; connector: string; schema: string; table: string; envelope: boolean; op: string }
  | { kind: 'other' }
  | { kind: 'malformed'; reason: string };


/**
 * Only what `check` reports (the connector, the table, whether the schema envelope is there); the
 * source's own decoder reads the values. A tombstone, heartbeat, transaction marker or schema change
 * is `other`.
 */
export function describeMessage(value: Buffer | null): MessageKind {
  if (value === null || value.length === 0) return { kind: 'other' };
  let json: unknown;
  try {
    json = JSON.parse(value.toString('utf8'));
  } catch (err) {
    return { kind: 'malformed', reason: `value is not JSON: ${(err as Error).message}` };
  }
  const envelope = isObject(json) && isObject(json['schema']) && 'payload' in json;
  const payload = envelope ? (json as Record<string, unknown>)['payload'] : json;
  if (!isObject(payload)) return { kind: 'malformed', reason: 'value is not a JSON object' };
  const source = payload['source'];
  if (typeof payload['op'] !== 'string') {
    const known = Object.keys(payload).length === 1 && 'ts_ms' in payload;
    const transaction = payload['status'] === 'BEGIN' || payload['status'] === 'END';
    const schemaChange = Array.isArray(payload['tableChanges']);
    return known || transaction || schemaChange ? { kind: 'other' } : { kind: 'malformed', reason: 'not a Debezium event: no "op"' };
  }
  if (!isObject(source)) return { kind: 'malformed', reason: 'missing source' };
  const { connector, namespace, table } = eventTable(source);
  if (typeof namespace !== 'string' || typeof table !== 'string') return { kind: 'malformed', reason: `an event of Debezium's ${connector} connector without its table` };
  return { kind: 'event', connector, schema: namespace, table, envelope, op: payload['op'] };
}

interface TopicFacts {
  connectors: Set<string>;
  /** tableKey → the table's name without its schema or database. */
  tables: Map<string, string>;
  withoutEnvelope: number;
  events: number;
  malformed: { count: number; first: string };
}

/**
 * One line per topic (which connector and tables its last messages come from, and whether the rules
 * map them), then one per mapped table no topic showed. `samples` is what sampleTopics read.
 */
export function debeziumChecks(samples: TopicSamples, rules: RuleSet, topicPattern: string | undefined): CheckLine[] {
  const lines: CheckLine[] = [ok(`kafka: ${plural(samples.brokers, 'broker')} reachable`)];
  if (topicPattern !== undefined && samples.topics.length === 0) {
    lines.push(
      fail(
        `topicPattern ${JSON.stringify(topicPattern)}: matches no topic`,
        'the worker subscribes to the topics that exist when it starts: create the connector (it makes a table\'s topic with its first change) or correct the pattern, then start the worker',
      ),
    );
  }
  for (const topic of samples.missing) {
    lines.push(warn(`topic ${topic}: does not exist yet`, "Debezium creates a table's topic with its first change; check the connector's topic.prefix and table.include.list"));
  }
  const mapped = new Set(rules.tables.map(([schema, table]) => tableKey(schema, table)));
  const seen = new Set<string>();
  for (const sample of samples.topics) {
    const facts = topicFacts(sample.messages);
    for (const t of facts.tables.keys()) seen.add(t);
    lines.push(...topicLines(sample.topic, sample.held, facts, mapped, rules));
  }
  if (samples.incomplete > 0) {
    lines.push(warn(`kafka: the last messages of ${plural(samples.incomplete, 'partition')} were not all read in time`, 'run check again; a broker slow to answer may need attention'));
  }
  for (const [schema, table] of rules.tables) {
    const key = tableKey(schema, table);
    if (seen.has(key)) continue;
    lines.push(
      warn(
        `table ${key}: mapped by the rules, and no event of it in the topics' last messages`,
        `check that the connector captures it (table.include.list) and that source.topics or source.topicPattern covers its topic; on MySQL and MariaDB name tables database.table`,
      ),
    );
  }
  return lines;
}

function topicFacts(messages: readonly SampledMessage[]): TopicFacts {
  const facts: TopicFacts = { connectors: new Set(), tables: new Map(), withoutEnvelope: 0, events: 0, malformed: { count: 0, first: '' } };
  for (const m of messages) {
    const d = describeMessage(m.value);
    if (d.kind === 'malformed') {
      if (facts.malformed.count++ === 0) facts.malformed.first = `${d.reason} (partition ${m.partition}, offset ${m.offset})`;
    } else if (d.kind === 'event') {
      facts.events++;
      facts.connectors.add(d.connector);
      facts.tables.set(tableKey(d.schema, d.table), d.table);
      if (!d.envelope && isBinlogConnector(d.connector)) facts.withoutEnvelope++;
    }
  }
  return facts;
}

function topicLines(topic: string, held: bigint, facts: TopicFacts, mapped: ReadonlySet<string>, rules: RuleSet): CheckLine[] {
  if (held === 0n) return [warn(`topic ${topic}: empty, nothing to check yet`, 'make a change to a mapped table and run check again')];
  const lines: CheckLine[] = [];
  if (facts.malformed.count > 0) {
    lines.push(fail(`topic ${topic}: ${plural(facts.malformed.count, 'message')} the worker cannot read: ${facts.malformed.first}`, 'these become dead letters (malformed_event); point source.topics at the connector\'s table topics only'));
  }
  if (facts.events === 0) {
    if (facts.malformed.count === 0) lines.push(ok(`topic ${topic}: no change event among its last messages (tombstones, heartbeats or schema changes)`));
    return lines;
  }
  const connectors = [...facts.connectors].sort();
  const unread = connectors.filter((c) => !isReadConnector(c));
  if (unread.length > 0) {
    lines.push(fail(`topic ${topic}: events of Debezium's ${listing(unread)} connector`, 'the worker reads the PostgreSQL, MySQL and MariaDB connectors\' events; their events become dead letters'));
  }
  if (facts.withoutEnvelope > 0) {
    lines.push(
      fail(
        `topic ${topic}: ${connectors.filter(isBinlogConnector).join(', ')} events without the schema envelope: their values cannot be read exactly, so every key is unknown`,
        'set value.converter.schemas.enable=true and key.converter.schemas.enable=true on the connector',
      ),
    );
  }
  const by = connectors.map((c) => `Debezium's ${c} connector`).join(' and ');
  for (const [table, name] of [...facts.tables].sort(([a], [b]) => (a < b ? -1 : 1))) {
    if (mapped.has(table)) {
      const count = rules.byTable.get(table)?.length ?? 0;
      lines.push(ok(`topic ${topic}: ${by}, table ${table}, mapped by ${plural(count, 'rule')}`));
      continue;
    }
    const namesake = rules.tables.filter(([, t]) => t === name).map(([s, t]) => tableKey(s, t));
    lines.push(
      warn(
        `topic ${topic}: ${by}, table ${table}, which no rule maps: its changes are ignored`,
        namesake.length > 0
          ? `the rules name ${listing(namesake)}; events name the table ${table} (MySQL and MariaDB: database.table; a name without one means public.)`
          : 'map the table in a rule file, or leave its topic out of source.topics',
      ),
    );
  }
  return lines;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
