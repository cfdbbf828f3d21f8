/**
 * Redis Cluster's key slots: CRC16 (XMODEM) of a key's hash tag, or of the whole key, modulo 16384.
 * The hash tag is the text between the first '{' and the first '}' after it, when that is not empty.
 */
export const CLUSTER_SLOTS = 16384;

const TABLE = (() => {
  const table = new Uint16Array(256);
  for (let i = 0; i < 256; i++) {
    let crc = i << 8;
    for (let bit = 0; bit < 8; bit++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
    table[i] = crc;
  }
  return table;
})();

export function keySlot(key: string | Buffer): number {
  const bytes = typeof key === 'string' ? Buffer.from(key, 'utf8') : key;
  let start = 0;
  let end = bytes.length;
  const open = bytes.indexOf(0x7b /* { */);
  if (open >= 0) {
    const close = bytes.indexOf(0x7d /* } */, open + 1);
    if (close > open + 1) {
      start = open + 1;
      end = close;
    }
  }
  let crc = 0;
  for (let i = start; i < end; i++) crc = ((crc << 8) & 0xffff) ^ TABLE[((crc >> 8) ^ bytes[i]!) & 0xff]!;
  return crc % CLUSTER_SLOTS;
}

/**
 * A name for something kept beside `key` (its lease, say) that Redis Cluster stores in the same
 * slot, so that one script can touch both: `prefix + key` when that already hashes like `key` (the
 * key has a hash tag), else `prefix + '{' + key + '}'` (the whole key becomes the tag, which hashes
 * like the key itself). Null when neither does: a key with a '}' and no hash tag.
 */
export function sameSlotName(prefix: string, key: string, suffix?: string): string | null;
export function sameSlotName(prefix: string, key: Buffer, suffix?: string): Buffer | null;
export function sameSlotName(prefix: string, key: string | Buffer, suffix = ''): string | Buffer | null {
  const slot = keySlot(key);
  if (typeof key === 'string') {
    const plain = prefix + key + suffix;
    if (keySlot(plain) === slot) return plain;
    const tagged = `${prefix}{${key}}${suffix}`;
    return keySlot(tagged) === slot ? tagged : null;
  }
  const plain = Buffer.concat([Buffer.from(prefix), key, Buffer.from(suffix)]);
  if (keySlot(plain) === slot) return plain;
  const tagged = Buffer.concat([Buffer.from(`${prefix}{`), key, Buffer.from(`}${suffix}`)]);
  return keySlot(tagged) === slot ? tagged : null;
}
