import { describe, expect, it } from 'vitest';
import { formatLsn, lsnFromBigInt, maxLsn, parseLsn, ZERO_LSN } from '../../src/core/lsn.js';

describe('parseLsn / formatLsn', () => {
  const cases: Array<{ text: string; value: bigint; formatted: string }> = [
    { text: '0/0', value: 0n, formatted: '0/0' },
    { text: '0/1', value: 1n, formatted: '0/1' },
    { text: '16/B374D848', value: 0x16b374d848n, formatted: '16/B374D848' },
    { text: '1/0', value: 0x1_0000_0000n, formatted: '1/0' },
    { text: '0/FFFFFFFF', value: 0xffff_ffffn, formatted: '0/FFFFFFFF' },
    { text: 'FFFFFFFF/FFFFFFFF', value: (1n << 64n) - 1n, formatted: 'FFFFFFFF/FFFFFFFF' },
    { text: '16/b374d848', value: 0x16b374d848n, formatted: '16/B374D848' },
    // pgoutput's parser zero-pads both halves; the value is the same.
    { text: '00000016/0000D848', value: 0x160000d848n, formatted: '16/D848' },
  ];

  it.each(cases)('$text', ({ text, value, formatted }) => {
    const lsn = parseLsn(text);
    expect(lsn).toBe(value);
    expect(formatLsn(lsn)).toBe(formatted);
    expect(parseLsn(formatLsn(lsn))).toBe(value);
  });

  const garbage = ['', '1/', '/1', 'G/1', '1/G', '1/2/3', '123456789/0', '0/123456789', ' 0/0', '0/0 ', '0x1/0', '-1/0', '1', '1//2'];

  it.each(garbage)('rejects %j', (text) => {
    expect(() => parseLsn(text)).toThrow(TypeError);
  });

  it('compares as numbers, not as text', () => {
    expect(parseLsn('1/0') > parseLsn('0/FFFFFFFF')).toBe(true);
    expect(parseLsn('A/0') > parseLsn('9/FFFFFFFF')).toBe(true);
    expect(parseLsn('0/10') > parseLsn('0/9')).toBe(true);
    expect(parseLsn('16/B374D848') === parseLsn('16/b374d848')).toBe(true);
  });

  it('maxLsn picks the larger', () => {
    expect(maxLsn(parseLsn('1/0'), parseLsn('0/FFFFFFFF'))).toBe(0x1_0000_0000n);
    expect(maxLsn(ZERO_LSN, parseLsn('0/5'))).toBe(5n);
  });
});

describe('lsnFromBigInt', () => {
  it('accepts the 64-bit range', () => {
    expect(lsnFromBigInt(0n)).toBe(0n);
    expect(formatLsn(lsnFromBigInt((1n << 64n) - 1n))).toBe('FFFFFFFF/FFFFFFFF');
  });

  it.each([-1n, 1n << 64n])('rejects %s', (value) => {
    expect(() => lsnFromBigInt(value)).toThrow(RangeError);
  });
});
