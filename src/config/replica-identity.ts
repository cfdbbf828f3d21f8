import { parseTableName, tableKey, type RuleSet } from '../core/rules.js';
import type { FileProblem } from '../errors.js';
import type { Config } from './schema.js';
import { suggest } from './validate.js';
import type { YamlDocument } from './yaml-document.js';

/**
 * `source.replicaIdentity` names tables; each must be a table the mappings name (or "*"): a
 * declaration for a misspelt table would leave the real one undeclared, read as key-only, with
 * nothing but a warning to show for it.
 */
export function replicaIdentityProblems(config: Config, rules: RuleSet, document: YamlDocument): FileProblem[] {
  if (config.source.kind !== 'debezium' || config.source.replicaIdentity === undefined) return [];
  const mapped = rules.tables.map(([schema, table]) => tableKey(schema, table));
  const problems: FileProblem[] = [];
  for (const name of Object.keys(config.source.replicaIdentity)) {
    if (name === '*') continue;
    const path = ['source', 'replicaIdentity', name];
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
