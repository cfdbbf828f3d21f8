import { MetaConnection } from '../../lib/memcached/meta-connection.js';
import { splitServer } from '../../lib/memcached/servers.js';
import { toError } from '../../errors.js';
import { fail, ok, type CheckLine } from './report.js';

/** What one memcached server answered: its version and whether it speaks the meta protocol. */
export type MemcachedFacts = { server: string; reachable: true; version: string; meta: boolean } | { server: string; reachable: false; error: string };

/** Asks every server `version` and `mn`, at once. */
export async function gatherMemcachedFacts(servers: readonly string[], timeoutMs = 3_000): Promise<MemcachedFacts[]> {
  return await Promise.all(
    servers.map(async (server): Promise<MemcachedFacts> => {
      const connection = new MetaConnection({ ...splitServer(server), timeoutMs });
      try {
        const [version, mn] = await connection.request([{ verb: 'version' }, { verb: 'mn' }]);
        return { server, reachable: true, version: version?.code === 'VERSION' ? (version.flags[0] ?? 'unknown') : 'unknown', meta: mn?.code === 'MN' };
      } catch (err) {
        return { server, reachable: false, error: toError(err).message };
      } finally {
        connection.close();
      }
    }),
  );
}

/** One line per server: reachable, 1.6 or newer, meta protocol spoken. */
export function memcachedChecks(facts: readonly MemcachedFacts[]): CheckLine[] {
  return facts.map((f) => {
    if (!f.reachable) return fail(`memcached ${f.server}: unreachable: ${f.error}`, 'start it, or correct memcached.servers');
    if (!f.meta) {
      return fail(`memcached ${f.server}: version ${f.version} does not speak the meta protocol`, 'memcached 1.6 or newer is needed (Debian 12 ships 1.6.18)');
    }
    return ok(`memcached ${f.server}: version ${f.version}, meta protocol`);
  });
}
