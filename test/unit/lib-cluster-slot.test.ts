import { describe, expect, it } from 'vitest';
import { keySlot, sameSlotName } from '../../src/lib/cluster-slot.js';

describe('Redis Cluster key slots', () => {
  it('hash like Redis: CRC16 (XMODEM) mod 16384 of the hash tag, or of the whole key', () => {
    // Redis Cluster specification: CRC16 of "123456789" is 0x31C3.
    expect(keySlot('123456789')).toBe(0x31c3);
    expect(keySlot('foo')).toBe(12182);
    expect(keySlot('bar')).toBe(5061);
    expect(keySlot('{user1000}.following')).toBe(keySlot('{user1000}.followers'));
    expect(keySlot('{user1000}.following')).toBe(keySlot('user1000'));
    // The specification's examples: the first '{' and the first '}' after it; an empty tag hashes the whole key.
    expect(keySlot('foo{}{bar}')).not.toBe(keySlot('bar'));
    expect(keySlot('foo{{bar}}zap')).toBe(keySlot('{bar'));
    expect(keySlot('foo{bar}{zap}')).toBe(keySlot('bar'));
    expect(keySlot(Buffer.from('foo'))).toBe(12182);
    expect(keySlot('ключ')).toBe(keySlot(Buffer.from('ключ', 'utf8')));
  });

  it('names a lease in its key\'s slot: as is when the key has a hash tag, the whole key as the tag otherwise', () => {
    expect(sameSlotName('cdc-lease:', '{user:1}:profile')).toBe('cdc-lease:{user:1}:profile');
    expect(sameSlotName('cdc-lease:', 'user:1')).toBe('cdc-lease:{user:1}');
    expect(keySlot(sameSlotName('cdc-lease:', 'user:1')!)).toBe(keySlot('user:1'));
    expect(sameSlotName('', 'app:tag:team:7', ':pending')).toBe('{app:tag:team:7}:pending');
    expect(keySlot(sameSlotName('', 'app:tag:team:7', ':pending')!)).toBe(keySlot('app:tag:team:7'));
    // A key with a '{' but no tag: the whole key becomes the tag, which hashes like the key.
    expect(keySlot(sameSlotName('p:', 'a{b')!)).toBe(keySlot('a{b'));
    // A '}' without a tag: no name in the key's slot.
    expect(sameSlotName('cdc-lease:', 'a}b')).toBeNull();
    const bytes = Buffer.from([0x61, 0xff, 0x62]);
    expect(keySlot(sameSlotName('cdc-lease:', bytes)!)).toBe(keySlot(bytes));
  });
});
