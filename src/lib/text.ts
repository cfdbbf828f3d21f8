/** `1 partition`, `2 partitions`. */
export function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

/** `a`, `a and b`, `a, b and c`. */
export function listing(items: readonly string[]): string {
  if (items.length <= 1) return items.join('');
  return `${items.slice(0, -1).join(', ')} and ${items.at(-1)}`;
}

/** Each item in double quotes. */
export function quoted(items: readonly string[]): string[] {
  return items.map((i) => `"${i}"`);
}
