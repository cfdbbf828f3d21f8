import { describe, expect, it } from 'vitest';
import { escapeGlob } from '../../src/core/glob.js';

describe('escapeGlob', () => {
  it.each([
    ['plain', 'plain'],
    ['', ''],
    ['a*b', 'a\\*b'],
    ['a?b', 'a\\?b'],
    ['[x]', '\\[x\\]'],
    ['back\\slash', 'back\\\\slash'],
    ['*?[]\\', '\\*\\?\\[\\]\\\\'],
    ['a-b^c{d}', 'a-b^c{d}'],
    ['ünïcødé*', 'ünïcødé\\*'],
  ])('%j -> %j', (value, escaped) => {
    expect(escapeGlob(value)).toBe(escaped);
  });
});
