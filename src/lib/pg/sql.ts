/** Quotes an identifier for SQL text: the only way a name reaches a statement unparameterised. */
export function quoteIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

export function quoteLiteral(text: string): string {
  return `'${text.replaceAll("'", "''")}'`;
}

export function qualifiedName(schema: string, table: string): string {
  return `${quoteIdent(schema)}.${quoteIdent(table)}`;
}

/**
 * The connection string as libpq would read it. pg treats `sslmode=require` as `verify-full`
 * (certificate and host checked), where libpq, psql and every other PostgreSQL client only ask
 * for encryption; a URL that works with psql must work here too. `verify-ca`/`verify-full` keep
 * their meaning, and an explicit `uselibpqcompat` is left alone.
 */
export function libpqConnectionString(url: string): string {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return url;
  }
  if (!parsed.searchParams.has('sslmode') || parsed.searchParams.has('uselibpqcompat')) return url;
  parsed.searchParams.set('uselibpqcompat', 'true');
  return parsed.toString();
}
