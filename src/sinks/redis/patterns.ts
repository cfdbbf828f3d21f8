import type { Redis } from 'ioredis';

/**
 * Deletes every key matching a glob: SCAN MATCH through the whole keyspace, deleting each page as
 * it comes (the next page is asked for while the previous one is deleted). SCAN guarantees every
 * key present for the whole scan is returned at least once; a key created during the scan may be
 * missed, which is fine: it was written after the change being applied. Running it again is
 * harmless. Keys are handled as bytes, so names that are not valid UTF-8 are deleted too.
 * Resolves to the number of keys deleted.
 */
export async function invalidatePattern(
  client: Redis,
  match: string,
  scanCount: number,
  deleteCommand: 'del' | 'unlink',
  leasePrefix = '',
): Promise<number> {
  const lease = Buffer.from(leasePrefix);
  // A matched key's lease goes with it; only the keys themselves are counted.
  const withLeases = (keys: Buffer[]) => (lease.length === 0 ? keys : [...keys, ...keys.map((k) => Buffer.concat([lease, k]))]);
  const remove = async (keys: Buffer[]) => {
    const args = withLeases(keys);
    await (deleteCommand === 'unlink' ? client.unlink(...args) : client.del(...args));
    return keys.length;
  };
  let cursor = '0';
  let page: Buffer[] = [];
  let deleted = 0;
  do {
    const [[next, keys], count] = await Promise.all([
      client.scanBuffer(cursor, 'MATCH', match, 'COUNT', scanCount),
      page.length === 0 ? 0 : remove(page),
    ]);
    deleted += count;
    cursor = next.toString();
    page = keys;
  } while (cursor !== '0');
  if (page.length > 0) deleted += await remove(page);
  return deleted;
}
