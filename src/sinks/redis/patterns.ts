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
): Promise<number> {
  let cursor = '0';
  let page: Buffer[] = [];
  let deleted = 0;
  do {
    const [[next, keys], count] = await Promise.all([
      client.scanBuffer(cursor, 'MATCH', match, 'COUNT', scanCount),
      page.length === 0 ? 0 : deleteCommand === 'unlink' ? client.unlink(...page) : client.del(...page),
    ]);
    deleted += count;
    cursor = next.toString();
    page = keys;
  } while (cursor !== '0');
  if (page.length > 0) deleted += deleteCommand === 'unlink' ? await client.unlink(...page) : await client.del(...page);
  return deleted;
}
