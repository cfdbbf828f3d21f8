import type { Failure, RedisFacts } from './facts.js';
import { fail, ok, type CheckLine } from './report.js';

/** Version keys are written with SET ... KEEPTTL, which Redis has since 6.0. */
const MIN_VERSION: readonly [number, number] = [6, 0];

/**
 * Redis: reachable, recent enough, a cluster exactly when the config says redis.cluster, writable
 * under the key prefix, and running Lua.
 */
export function redisChecks(facts: RedisFacts, expected: { cluster: boolean; waitReplicas?: number } = { cluster: false }): CheckLine[] {
  const name = `redis ${facts.target}`;
  if (!facts.reachable) return [unreachable(name, facts.error)];

  const lines: CheckLine[] = [ok(`${name}: reachable${facts.version === null ? '' : ` (Redis ${facts.version})`}`)];
  if (facts.version !== null && olderThan(facts.version, MIN_VERSION)) {
    lines.push(
      fail(
        `Redis ${facts.version} is too old: version keys are written with SET ... KEEPTTL, which needs Redis 6.0`,
        'upgrade Redis to 6.0 or newer',
      ),
    );
  }
  if (facts.clusterEnabled && !expected.cluster) {
    lines.push(
      fail(
        `${name} runs in cluster mode, and redis.url names one server: the single-server sink applies each batch as one script call over keys of any hash slot, which a cluster refuses`,
        'list the cluster\'s nodes as redis.cluster: [redis://host:port, ...] instead of redis.url',
      ),
    );
  }
  if (!facts.clusterEnabled && expected.cluster) {
    lines.push(fail(`${name}: redis.cluster names a server that is not in cluster mode`, 'use redis.url for a single server, or point redis.cluster at the nodes of a Redis Cluster'));
  }

  const wanted = expected.waitReplicas ?? 0;
  if (wanted > 0 && facts.replicas !== null) {
    if (facts.replicas < wanted) {
      lines.push(
        fail(
          `${name}: redis.waitReplicas is ${wanted}, and ${expected.cluster ? 'a master' : 'the primary'} has ${facts.replicas} replica${facts.replicas === 1 ? '' : 's'} connected: every batch would wait (and be retried) until enough are`,
          `connect ${wanted} replica${wanted === 1 ? '' : 's'} to every primary, or lower redis.waitReplicas (0 turns the wait off, at the cost of losing acknowledged deletions in a failover)`,
        ),
      );
    } else {
      lines.push(ok(`${name}: ${facts.replicas} replica${facts.replicas === 1 ? '' : 's'} connected${expected.cluster ? ' to every master' : ''} (redis.waitReplicas ${wanted})`));
    }
  }
  if (facts.write.ok) {
    lines.push(ok(`${name}: writable (SET and DEL of "${facts.probeKey}")`));
  } else {
    lines.push(writeFailure(name, facts.probeKey, facts.write.error, facts.role));
  }
  if (facts.script !== null) {
    if (facts.script.ok) {
      lines.push(ok(`${name}: runs Lua scripts (SCRIPT LOAD, EVALSHA with SET ... KEEPTTL)`));
    } else {
      lines.push(
        fail(
          `${name}: cannot run the worker's Lua scripts: ${facts.script.error.message}`,
          facts.script.error.code === 'NOPERM'
            ? 'allow the Redis user the scripting commands (ACL SETUSER <user> +@scripting)'
            : 'enable EVAL, EVALSHA and SCRIPT (they may be renamed or disabled in redis.conf)',
        ),
      );
    }
  }
  return lines;
}

function unreachable(name: string, error: Failure): CheckLine {
  const text = (why: string) => `${name}: cannot connect: ${why}`;
  switch (error.code) {
    case 'ECONNREFUSED':
      return fail(text('connection refused'), 'start Redis, or correct the host and port in redis.url');
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return fail(text(`host not found (${error.message})`), 'correct the host in redis.url');
    case 'TIMEOUT':
    case 'ETIMEDOUT':
      return fail(text('no answer in time'), 'check the host and port in redis.url, that no firewall drops the connection, and rediss:// for TLS');
    case 'NOAUTH':
    case 'WRONGPASS':
      return fail(text(error.message), 'put the right user and password in redis.url: redis://user:password@host:port');
    default:
      return fail(text(error.message), 'correct redis.url');
  }
}

function writeFailure(name: string, probeKey: string, error: Failure, role: string | null): CheckLine {
  const text = `${name}: not writable: ${error.message}`;
  switch (error.code) {
    case 'READONLY':
      return fail(text, `point redis.url at the primary${role === null ? '' : ` (this server's role is ${role})`}`);
    case 'NOPERM':
      return fail(text, `allow the Redis user to write keys like "${probeKey}" (ACL SETUSER <user> ~<keyPrefix>* +@write +@read +@transaction +@scripting)`);
    case 'OOM':
      return fail(text, 'Redis is out of memory: raise maxmemory, or use an eviction policy other than noeviction');
    default:
      return fail(text, 'see the Redis error above');
  }
}

/** Compares `major.minor[.patch]` with a minimum; an unparseable version is not called old. */
export function olderThan(version: string, min: readonly [number, number]): boolean {
  const m = /^(\d+)\.(\d+)/.exec(version);
  if (m === null) return false;
  const major = Number(m[1]);
  const minor = Number(m[2]);
  return major < min[0] || (major === min[0] && minor < min[1]);
}
