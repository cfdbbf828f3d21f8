// Kept apart from services.ts, which registers vitest hooks when imported: harness modules that also
// run outside vitest (the Debezium bench starts its broker with kafka.ts) import it from here.

/** CI=true (or any value but "false"/"0"): nothing may be skipped for want of a service. */
export function isCI(): boolean {
  const value = process.env.CI;
  return value !== undefined && value !== '' && value !== 'false' && value !== '0';
}
