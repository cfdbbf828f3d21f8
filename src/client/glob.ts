/**
 * Redis glob matching (the rules of Redis's stringmatchlen, as used by SCAN MATCH): `*` any run of
 * characters, `?` one character, `[abc]`, `[^abc]` and `[a-z]` classes, `\x` the character x. The L1
 * cache uses it to drop entries that a notified pattern matched, exactly as the worker's SCAN did.
 */
export function globMatch(pattern: string, text: string): boolean {
  return matchFrom(pattern, 0, text, 0);
}

function matchFrom(p: string, pi: number, s: string, si: number): boolean {
  while (pi < p.length) {
    const c = p[pi]!;
    if (c === '*') {
      while (p[pi + 1] === '*') pi++;
      if (pi + 1 === p.length) return true;
      for (let k = si; k <= s.length; k++) {
        if (matchFrom(p, pi + 1, s, k)) return true;
      }
      return false;
    }
    if (si >= s.length) return false;
    if (c === '?') {
      pi++;
      si++;
      continue;
    }
    if (c === '[') {
      let i = pi + 1;
      const not = p[i] === '^';
      if (not) i++;
      let matched = false;
      const ch = s[si]!;
      for (;;) {
        if (i >= p.length) {
          i = p.length - 1; // Redis: an unterminated class ends at the pattern's end
          break;
        }
        const pc = p[i]!;
        if (pc === ']') break;
        if (pc === '\\' && i + 1 < p.length) {
          i++;
          if (p[i] === ch) matched = true;
        } else if (p[i + 1] === '-' && i + 2 < p.length) {
          let lo = pc;
          let hi = p[i + 2]!;
          if (lo > hi) [lo, hi] = [hi, lo];
          if (ch >= lo && ch <= hi) matched = true;
          i += 2;
        } else if (pc === ch) {
          matched = true;
        }
        i++;
      }
      if (not) matched = !matched;
      if (!matched) return false;
      pi = i + 1;
      si++;
      continue;
    }
    if (c === '\\' && pi + 1 < p.length) {
      if (p[pi + 1] !== s[si]) return false;
      pi += 2;
      si++;
      continue;
    }
    if (c !== s[si]) return false;
    pi++;
    si++;
  }
  return si === s.length;
}
