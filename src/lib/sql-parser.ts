// PostgreSQL's own parser (libpg_query, compiled to WebAssembly), for query rules. Loaded only when a
// mapping file has one: the module and its memory cost nothing to a worker without.

/** Parses one SQL text into libpg_query's parse tree; throws with PostgreSQL's message and position. */
export type ParseSql = (sql: string) => unknown;

let loading: Promise<ParseSql> | undefined;

export async function loadSqlParser(): Promise<ParseSql> {
  loading ??= (async () => {
    const parser = await import('libpg-query');
    await parser.loadModule();
    return (sql: string) => {
      try {
        return parser.parseSync(sql);
      } catch (err) {
        const details = (err as { sqlDetails?: { cursorPosition?: number } }).sqlDetails;
        const message = err instanceof Error ? err.message : String(err);
        const at = details?.cursorPosition;
        throw new Error(at === undefined || at < 0 ? message : `${message} (at character ${at + 1})`, { cause: err });
      }
    };
  })();
  return await loading;
}
