import { parseTableName, tableKey, type RuleSet } from '../core/rules.js';
import type { FileProblem } from '../errors.js';
import { suggest } from './validate.js';
import type { YamlDocument } from './yaml-document.js';

/**
 * `source.tableIdentities` names tables; each must be a table the mappings name (or "*"): a
 * declaration for a misspelt table would leave the real one undeclared, read as key-only, with
 * nothing but a warning to show for it. Reads the raw document, so the names are checked even when
 * another part of the config is invalid.
 */
export function replicaIdentityProblems(data: unknown, rules: RuleSet, document: YamlDocument): FileProblem[] {
  const source = isRecord(data) ? data['source'] : undefined;
  const declared = isRecord(source) && source['kind'] === 'debezium' ? source['tableIdentities'] : undefined;
  if (!isRecord(declared)) return [];
  const mapped = rules.tables.map(([schema, table]) => tableKey(schema, table));
  const problems: FileProblem[] = [];
  for (const name of Object.keys(declared)) {
    if (name === '*') continue;
    const path = ['source', 'tableIdentities', name];
    const parsed = parseTableName(name);
    if (typeof parsed === 'string') {
      problems.push(document.problem(path, parsed, { target: 'key' }));
      continue;
    }
    const key = tableKey(parsed.schema, parsed.table);
    if (mapped.includes(key)) continue;
    const hint = suggest(key, mapped);
    problems.push(
      document.problem(
        path,
        `no mapping rule names table "${key}"${hint === undefined ? '' : ` (did you mean "${hint}"?)`}; ` +
          `name a mapped table (${mapped.join(', ')}), or "*" for every table not named`,
        { target: 'key' },
      ),
    );
  }
  return problems;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
