/**
 * Escapes Redis glob characters (`*`, `?`, `[`, `]`, `\`) in a value rendered into a pattern:
 * only the pattern's own wildcards match, so a value can never widen what is deleted.
 */
export function escapeGlob(value: string): string {
  return value.replace(/[*?[\]\\]/g, '\\$&');
}
