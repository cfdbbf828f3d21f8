import { z } from 'zod';
import { OPERATIONS } from '../core/change.js';
import type { RuleEntry } from '../core/rules.js';
import { memcachedSchema } from './memcached-schema.js';
import { DEFAULT_LEASE_PREFIX } from '../lib/cache-keys.js';

/**
 * The config file and mapping file formats. Every object is strict: a misspelt key must fail loudly
 * rather than silently leave a setting at its default. Types are inferred from these schemas only.
 */

/** PostgreSQL accepts only these characters in replication slot names. */
const SLOT_NAME = /^[a-z0-9_]{1,63}$/;

/** Source kinds the worker can run. */
export const SOURCE_KINDS = ['postgres', 'debezium'] as const;

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

/** A PostgreSQL connection string as libpq takes it: a postgres:// or postgresql:// URI, or key=value pairs. */
const postgresUrl = (what: string) =>
  z
    .string()
    .min(1)
    .refine((text) => /^postgres(ql)?:\/\/./i.test(text) || /^\s*[a-z_]+\s*=/i.test(text), {
      message: `${what} must be a postgres:// or postgresql:// URI, or libpq key=value pairs (host=... dbname=...)`,
    });

const postgresSourceSchema = z.strictObject({
  kind: z.literal('postgres'),
  url: postgresUrl('source.url'),
  slot: z
    .string()
    .regex(SLOT_NAME, {
      error: 'a replication slot name must be 1 to 63 characters of lower-case letters, digits and "_" (a PostgreSQL rule)',
    })
    .default('cdc_invalidator'),
  publication: z.string().min(1).max(63).default('cdc_invalidator'),
  /** 0 turns the heartbeat off. */
  heartbeatSeconds: z.number().min(0).default(15),
  /**
   * What to do when the slot has lost WAL it needed (max_slot_wal_keep_size exceeded): `fail`
   * stops with instructions; `recover` runs every rule's fallback (as for a TRUNCATE of every
   * mapped table), recreates the slot and goes on. Recovery needs a fallback on every rule.
   */
  slotLost: z.enum(['fail', 'recover']).default('fail'),
  /**
   * check: refuse to start when a table's replica identity cannot send the old-row columns a rule
   * renders (unless the rule has a fallback), with the ALTER TABLE that fixes it; full: the worker
   * sets REPLICA IDENTITY FULL on those tables at start (it must own them).
   */
  replicaIdentity: z.enum(['check', 'full']).default('check'),
});

/**
 * A table's REPLICA IDENTITY as declared for a Debezium source without a database URL: full,
 * default (the primary key, which Debezium's message key holds), nothing, or the columns of the
 * identity index. It decides which old-row columns are real and which Debezium filled in.
 */
const identityDeclarationSchema = z.union([z.enum(['full', 'default', 'nothing']), z.strictObject({ index: z.array(z.string().min(1)).min(1, 'list the columns of the identity index') })], {
  error: 'expected full, default, nothing, or { index: [columns of the identity index] }',
});

const debeziumSourceSchema = z
  .strictObject({
    kind: z.literal('debezium'),
    /** Kafka bootstrap servers, host:port. */
    brokers: z.array(z.string().min(1)).min(1),
    groupId: z.string().min(1).default('cdc-invalidator'),
    clientId: z.string().min(1).default('cdc-invalidator'),
    /**
     * How long the group waits for a worker that stopped answering (killed, partitioned) before its
     * partitions go to the others. The broker bounds it (group.min.session.timeout.ms, 6 s by default,
     * to group.max.session.timeout.ms, 30 min); heartbeats go every third of it, at most every 3 s.
     */
    sessionTimeoutMs: z.number().int().min(1_000).max(3_600_000).default(10_000),
    /** The Debezium topics to read (one per table), or a regular expression matching them. */
    topics: z.array(z.string().min(1)).min(1).optional(),
    topicPattern: z
      .string()
      .min(1)
      .refine((p) => {
        try {
          new RegExp(p);
          return true;
        } catch {
          return false;
        }
      }, 'not a valid regular expression')
      .optional(),
    /** Whether snapshot reads (op "r") invalidate like inserts. */
    snapshot: z.boolean().default(false),
    /**
     * A PostgreSQL connection string: for lookups, and to read each table's replica identity and
     * column types from the catalog.
     */
    url: postgresUrl('source.url').optional(),
    /**
     * Without `url`: each mapped table's replica identity, by table name ("users" means
     * public.users; "*" every table not named). Undeclared tables are read as key-only.
     */
    tableIdentities: z.record(z.string().min(1), identityDeclarationSchema).optional(),
  })
  .superRefine((value, ctx) => {
    if ((value.topics === undefined) === (value.topicPattern === undefined)) {
      ctx.addIssue({ code: 'custom', path: ['topics'], message: 'give either "topics" or "topicPattern"' });
    }
    if (value.url !== undefined && value.tableIdentities !== undefined) {
      ctx.addIssue({
        code: 'custom',
        path: ['tableIdentities'],
        message: 'with "url" set, replica identities are read from the database: remove "tableIdentities"',
      });
    }
  });

const sourceSchema = z.discriminatedUnion('kind', [postgresSourceSchema, debeziumSourceSchema], {
  error: (issue) => {
    if (issue.code !== 'invalid_union') return undefined;
    const allowed = SOURCE_KINDS.join(', ');
    const input = issue.input as Record<string, unknown> | null | undefined;
    const kind = typeof input === 'object' && input !== null ? input['kind'] : undefined;
    if (kind === undefined) return `missing required key "kind" (one of: ${allowed})`;
    return `unknown source kind ${JSON.stringify(kind)}; expected one of: ${allowed}`;
  },
});

/** Where the worker finds Redis when the config names neither a server nor a cluster. */
export const DEFAULT_REDIS_URL = 'redis://127.0.0.1:6379';

const redisUrl = (what: string) =>
  z
    .string()
    .min(1)
    .refine((text) => /^rediss?:\/\/[^/\s]+/i.test(text), { message: `${what} must be a redis:// or rediss:// URL (redis://[user:password@]host:port)` });

const redisSchema = z
  .strictObject({
    /** One Redis server (a primary). Default redis://127.0.0.1:6379 unless `cluster` is given. */
    url: redisUrl('redis.url').optional(),
    /** Seed nodes of a Redis Cluster, instead of `url`: the rest of the cluster is discovered. */
    cluster: z.array(redisUrl('each redis.cluster seed')).min(1).optional(),
    /**
     * Redis Sentinel, instead of `url`: the primary of the set `name` as the sentinels at `nodes`
     * name it, followed through failovers. The nodes' URLs carry the sentinels' own user and
     * password; `username`/`password` are the primary's.
     */
    sentinel: z
      .strictObject({
        name: z.string().min(1),
        nodes: z.array(redisUrl('each redis.sentinel node')).min(1),
        username: z.string().min(1).optional(),
        password: z.string().min(1).optional(),
        /** rediss:// to the primary and its replicas. */
        tls: z.boolean().default(false),
      })
      .optional(),
    /**
     * Replicas that must have a batch's writes (Redis WAIT) before it counts as applied, so that a
     * failover cannot take acknowledged invalidations with it. 0: not waited for. Default 1 with
     * `cluster` or `sentinel` (which exist to fail over), 0 with `url`.
     */
    waitReplicas: z.number().int().min(0).optional(),
    /** How long WAIT may take; fewer replicas by then fails the batch, which is retried. */
    waitTimeoutMs: z.number().int().positive().default(1_000),
    /** Prepended to every key the worker touches. */
    keyPrefix: z.string().default(''),
    deleteCommand: z.enum(['del', 'unlink']).default('del'),
    /** Channel on which the keys, tags and patterns of each applied batch are published. */
    notifyChannel: z.string().min(1).optional(),
    /**
     * Leases of the package's cache client: deleting key K also deletes `<leasePrefix>K`, so a fill
     * that read the database before the change cannot write after it. false turns that off.
     */
    leases: z.boolean().default(true),
    leasePrefix: z.string().min(1).default(DEFAULT_LEASE_PREFIX),
  })
  .refine((r) => [r.url, r.cluster, r.sentinel].filter((v) => v !== undefined).length <= 1, {
    message: 'give one of redis.url (one server), redis.cluster (the seed nodes of a cluster) or redis.sentinel (a Sentinel set), not several',
  })
  .transform((r) => {
    const single = r.cluster === undefined && r.sentinel === undefined;
    return { ...r, url: single ? (r.url ?? DEFAULT_REDIS_URL) : undefined, waitReplicas: r.waitReplicas ?? (single ? 0 : 1) };
  });

const httpSchema = z.strictObject({
  host: z.string().min(1).default('0.0.0.0'),
  /** 0 picks a free port (logged at start). */
  port: z.number().int().min(0).max(65535).default(9464),
  /** /readyz answers 503 while lag_seconds is above this. */
  readyMaxLagSeconds: z.number().positive().default(60),
  /** /healthz answers 503 when the loop has made no attempt for this long while work is pending. */
  stuckAfterSeconds: z.number().positive().default(120),
  /** How often the slot's lag in bytes and retained WAL are read from the database. */
  slotStatsIntervalSeconds: z.number().positive().default(10),
});

const batchSchema = z.strictObject({
  maxChanges: z.number().int().min(1).max(100_000).default(5000),
  /**
   * 0, not the 5 SPEC.md shows: a batch is cut as soon as the source has nothing more buffered, so
   * an idle worker applies a lone change at once instead of waiting for company.
   */
  maxWaitMs: z.number().int().min(0).max(10_000).default(0),
});

const consistencySchema = z.strictObject({
  /**
   * Apply a commit's invalidations only once its transaction is visible to new snapshots. auto: when
   * the database has synchronous standbys (a commit is shipped before they confirm it, and is
   * invisible until they do); always; off.
   */
  visibility: z.enum(['auto', 'always', 'off']).default('auto'),
  /** Read replicas the application reads from: each commit's keys are invalidated again once each has replayed it. */
  replicas: z.array(z.strictObject({ url: postgresUrl('a replica url') })).default([]),
  /** A replica further behind than this is reported (not ready); its invalidations still wait for it. */
  replicaTimeoutMs: z.number().int().min(100).max(3_600_000).default(30_000),
  /** How often a replica's replay position is read while invalidations wait for it. */
  replicaPollMs: z.number().int().min(1).max(10_000).default(20),
});

const logSchema = z.strictObject({
  level: z.enum(LOG_LEVELS).default('info'),
  /** json: one JSON object per line (for collectors); pretty: coloured lines for people. */
  format: z.enum(['json', 'pretty']).default('json'),
});

// prefault, not default: an absent section is parsed as {}, so it receives every inner default.
export const configSchema = z.strictObject({
  source: sourceSchema,
  redis: redisSchema.prefault({}),
  /** The cache is memcached instead of Redis (docs/memcached.md). */
  memcached: memcachedSchema.optional(),
  /** A mapping file or a directory of them, relative to the config file's folder. */
  mappings: z.string().min(1),
  http: httpSchema.prefault({}),
  batch: batchSchema.prefault({}),
  consistency: consistencySchema.prefault({}),
  log: logSchema.prefault({}),
});

export type Config = z.infer<typeof configSchema>;
export type PostgresSourceConfig = z.infer<typeof postgresSourceSchema>;
export type DebeziumSourceConfig = z.infer<typeof debeziumSourceSchema>;
export type RedisConfig = Config['redis'];
export type MemcachedConfig = NonNullable<Config['memcached']>;
export type HttpConfig = Config['http'];
export type BatchConfig = Config['batch'];
export type ConsistencyConfig = Config['consistency'];
export type LogLevel = (typeof LOG_LEVELS)[number];

const templateList = z.array(z.string());

const lookupSchema = z.strictObject({
  /** A parameterised query: $1, $2 ... take the values of `params`, in order. */
  sql: z.string().min(1),
  /** Columns of the changed row whose values are the query's parameters. */
  params: z.array(z.string()).default([]),
  /** Statement timeout for one run of the query. */
  timeoutMs: z.number().int().min(1).max(600_000).default(5_000),
  /** Attempts after the first before the rule's fallback (or a dead letter) takes over. */
  retries: z.number().int().min(0).max(100).default(3),
});

const actionsSchema = {
  invalidate: templateList.optional(),
  bump: templateList.optional(),
  tags: templateList.optional(),
  patterns: templateList.optional(),
};

export const ruleSchema = z
  .strictObject({
    /** The table whose changes the rule maps to keys. */
    table: z.string().optional(),
    /**
     * Or: the SELECT the application caches, with $1..$n; the worker derives the rule of every table it
     * reads (docs/configuration.md#query-rules).
     */
    query: z.string().min(1).optional(),
    /** A query rule's names for $1..$n, in order: its key templates use them. */
    params: z.array(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'a parameter name is a letter or _ followed by letters, digits or _')).optional(),
    /** A query rule's lookups (derived): statement timeout and retries. */
    lookupTimeoutMs: z.number().int().min(1).max(600_000).optional(),
    lookupRetries: z.number().int().min(0).max(100).optional(),
    /**
     * A query rule whose shape is not supported is refused, unless this says how to cover it coarsely:
     * any change to a table it mentions deletes every key of the rule, by pattern or by a tag.
     */
    coarse: z.union([z.literal('pattern'), z.strictObject({ tag: z.string().min(1) })]).optional(),
    on: z
      .array(z.enum(OPERATIONS))
      .min(1)
      .superRefine((ops, ctx) => {
        ops.forEach((op, i) => {
          if (ops.indexOf(op) !== i) ctx.addIssue({ code: 'custom', path: [i], input: op, message: `"${op}" is listed twice` });
        });
      })
      .optional(),
    when: z.strictObject({ changed: z.array(z.string()) }).optional(),
    lookup: z
      .record(
        z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'a lookup name is a letter or _ followed by letters, digits or _'),
        lookupSchema,
      )
      .optional(),
    ...actionsSchema,
    fallback: z.strictObject(actionsSchema).optional(),
  })
  .superRefine((rule, ctx) => {
    if (rule.table === undefined && rule.query === undefined) {
      ctx.addIssue({ code: 'custom', path: [], input: rule, message: 'a rule needs "table" (the table it maps) or "query" (the SELECT the application caches)' });
    }
    if (rule.table !== undefined && rule.query !== undefined) {
      ctx.addIssue({ code: 'custom', path: ['query'], input: rule.query, message: 'a rule has "table" or "query", not both: a query rule derives the rule of every table it reads' });
    }
    if (rule.query !== undefined) {
      for (const key of ['on', 'when', 'lookup'] as const) {
        if (rule[key] !== undefined) {
          ctx.addIssue({ code: 'custom', path: [key], input: rule[key], message: `a query rule derives "${key}" from the query: remove it (explain --rule shows what is derived)` });
        }
      }
    } else {
      for (const key of ['params', 'lookupTimeoutMs', 'lookupRetries', 'coarse'] as const) {
        if (rule[key] !== undefined) {
          ctx.addIssue({ code: 'custom', path: [key], input: rule[key], message: `"${key}" belongs to a query rule (one with "query"), not to a table rule` });
        }
      }
    }
  });

export const mappingFileSchema = z.strictObject({
  rules: z.array(ruleSchema),
});

export type Rule = z.infer<typeof ruleSchema>;
export type MappingFile = z.infer<typeof mappingFileSchema>;

// The rules compiler takes what this schema produces; this line stops the two from drifting apart.
export type RuleFitsCompiler = Rule extends RuleEntry ? true : never;
true satisfies RuleFitsCompiler;
