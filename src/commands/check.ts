import type { LoadedConfig } from '../config/load.js';
import type { RuleSet } from '../core/rules.js';
import { toError } from '../errors.js';
import type { PostgresFacts } from './check/facts.js';
import { gatherPostgresFacts, type LookupQuery } from './check/gather-postgres.js';
import { lookupChecks } from './check/lookup-checks.js';
import { gatherRedisFacts } from './check/gather-redis.js';
import { httpChecks, httpPortFree } from './check/http-checks.js';
import { publicationChecks } from './check/publication-checks.js';
import { gatherMemcachedFacts, memcachedChecks } from './check/memcached-checks.js';
import { redisChecks } from './check/redis-checks.js';
import { exitCode, fail, formatReport, type CheckLine } from './check/report.js';
import { serverChecks, slotChecks } from './check/server-checks.js';
import { tableChecks } from './check/table-checks.js';
import { debeziumChecks } from './check/debezium-checks.js';
import { sampleTopics } from '../lib/kafka-topics.js';

/** The last messages of each partition `check` reads from a Debezium source's topics. */
const SAMPLED_PER_PARTITION = 20;
const KAFKA_TIMEOUT_MS = 10_000;

export interface CheckWanted {
  slot: string;
  publication: string;
  rules: LoadedConfig['rules'];
  /** source.replicaIdentity: with `full`, run sets REPLICA IDENTITY FULL where the rules need it. */
  replicaIdentity?: 'check' | 'full';
}

/**
 * `check`: the online preflight. Gathers facts from the source (the database; for a Debezium source,
 * the last messages of its topics) and the cache (reads, plus one probe key in Redis; memcached is
 * asked its version), turns them into one line per check, and returns the report and exit code:
 * 0 when nothing failed (warnings allowed), 1 otherwise.
 */
export async function runCheck(loaded: LoadedConfig): Promise<{ text: string; exitCode: 0 | 1 }> {
  const { config, rules } = loaded;
  const source = config.source;
  const [sourceLines, cache, http] = await Promise.all([
    source.kind === 'postgres'
      ? gatherPostgresFacts({
          url: source.url,
          slot: source.slot,
          publication: source.publication,
          tables: rules.tables,
          lookups: lookupQueries(rules),
        }).then(
          (facts) => postgresChecks(facts, { slot: source.slot, publication: source.publication, rules, replicaIdentity: source.replicaIdentity }),
          (err: unknown) => [stopped('database', toError(err))],
        )
      : sampleTopics({ brokers: source.brokers, topics: source.topics, topicPattern: source.topicPattern, perPartition: SAMPLED_PER_PARTITION, timeoutMs: KAFKA_TIMEOUT_MS }).then(
          (samples) => debeziumChecks(samples, rules, source.topicPattern),
          (err: unknown) => [fail(`kafka: unreachable: ${toError(err).message}`, 'start the brokers, or correct source.brokers')],
        ),
    config.memcached !== undefined
      ? gatherMemcachedFacts(config.memcached.servers)
      : gatherRedisFacts({ url: config.redis.url, cluster: config.redis.cluster, sentinel: config.redis.sentinel, keyPrefix: config.redis.keyPrefix }).catch((err: unknown) => toError(err)),
    config.http.port === 0 ? null : httpPortFree(config.http.host, config.http.port),
  ]);
  const lines = [
    ...sourceLines,
    ...(Array.isArray(cache)
      ? memcachedChecks(cache)
      : cache instanceof Error
        ? [stopped('redis', cache)]
        : redisChecks(cache, { cluster: config.redis.cluster !== undefined, waitReplicas: config.redis.waitReplicas })),
    ...httpChecks(config.http.host, config.http.port, http),
  ];
  return { text: formatReport(lines, [...(source.url === undefined ? [] : urlSecrets(source.url)), ...(config.redis.cluster ?? config.redis.sentinel?.nodes ?? [config.redis.url ?? '']).flatMap(urlSecrets), ...(config.redis.sentinel?.password === undefined ? [] : [config.redis.sentinel.password])]), exitCode: exitCode(lines) };
}

/** A query that failed where none should (the connection dropped mid-check, say). */
function stopped(what: 'database' | 'redis', err: Error): CheckLine {
  return fail(`${what}: the check stopped: ${err.message}`, `check the ${what === 'database' ? 'database' : 'Redis'} server's log, then run check again`);
}

/** Every database verdict, in the order an operator fixes them: server, privileges, slot, publication, tables, lookups. */
export function postgresChecks(facts: PostgresFacts, wanted: CheckWanted): CheckLine[] {
  const lines = serverChecks(facts, wanted.slot);
  if (!facts.reachable) return lines;
  lines.push(...slotChecks(facts, wanted.slot));
  lines.push(...publicationChecks(facts, wanted.publication, wanted.rules));
  lines.push(...tableChecks(facts, wanted.rules, wanted.replicaIdentity ?? 'check'));
  lines.push(...lookupChecks(facts));
  return lines;
}

function lookupQueries(rules: RuleSet): LookupQuery[] {
  return [...rules.byTable.values()].flat().flatMap((rule) =>
    [...rule.lookups.values()].map((l) => ({ rule: rule.id, alias: l.alias, sql: l.sql, params: l.params.length, timeoutMs: l.timeoutMs })),
  );
}

/**
 * Passwords in connection URLs, raw and decoded: masked wherever they might turn up. A password
 * equal to the user name (postgres:postgres) is left alone: the name is printed anyway, and
 * masking it would only tell the reader that the two are the same.
 */
export function urlSecrets(url: string): string[] {
  try {
    const u = new URL(url);
    const user = safeDecode(u.username);
    const fromQuery = u.searchParams.get('password');
    return [u.password, safeDecode(u.password), fromQuery ?? ''].filter((s) => s.length > 0 && s !== user && s !== u.username);
  } catch {
    return [];
  }
}

function safeDecode(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

