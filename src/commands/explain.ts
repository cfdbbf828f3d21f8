import { OPERATIONS, type Change, type KeyOperation, type Operation, type Row } from '../core/change.js';
import { emptyEvaluation, evaluate, lookupsFor } from '../core/evaluate.js';
import { NO_LOOKUP_RESULTS, type LookupRequest, type LookupResults } from '../core/lookup.js';
import { Document, isScalar, visit } from 'yaml';
import { parseTableName, type RuleSet } from '../core/rules.js';

export interface ExplainArgs {
  table?: string | undefined;
  op?: string | undefined;
  before?: string | undefined;
  after?: string | undefined;
}

/**
 * `explain`: the key operations one change would produce, without touching anything. Values in
 * the JSON rows are used as their text form (numbers as digits, booleans as true/false); a column
 * left out of a row is unknown, exactly as when Postgres does not send it.
 */
export async function explainChange(
  rules: RuleSet,
  args: ExplainArgs,
  runLookups?: (requests: LookupRequest[]) => Promise<LookupResults>,
): Promise<{ ok: true; text: string } | { ok: false; error: string }> {
  if (args.table === undefined) return { ok: false, error: '--table is required' };
  if (args.op === undefined || !(OPERATIONS as readonly string[]).includes(args.op)) {
    return { ok: false, error: `--op must be one of ${OPERATIONS.join(', ')}` };
  }
  const op = args.op as Operation;
  const name = parseTableName(args.table);
  if (typeof name === 'string') return { ok: false, error: name };
  const before = parseRow('--before', args.before);
  const after = parseRow('--after', args.after);
  if (typeof before === 'string') return { ok: false, error: before };
  if (typeof after === 'string') return { ok: false, error: after };
  const needsBefore = op === 'update' || op === 'delete';
  const needsAfter = op === 'insert' || op === 'update';
  if (needsBefore && before === null) return { ok: false, error: `--before is required for ${op}` };
  if (needsAfter && after === null) return { ok: false, error: `--after is required for ${op}` };

  const change: Change = {
    schema: name.schema,
    table: name.table,
    op,
    before: needsBefore ? before : null,
    after: needsAfter ? after : null,
    keyColumns: [],
    version: null,
    position: 'explain',
  };
  const lines: string[] = [];
  // Lookups are SELECTs: explain runs them (on the database of the config) to show the real keys.
  const requests = new Map<string, LookupRequest>();
  lookupsFor(change, rules, requests);
  let lookups = NO_LOOKUP_RESULTS;
  if (requests.size > 0 && runLookups !== undefined) {
    lookups = await runLookups([...requests.values()]);
    for (const request of requests.values()) {
      const r = lookups.get(request.id);
      const outcome = r === undefined ? 'not run' : r.ok ? `${r.rows.length} row${r.rows.length === 1 ? '' : 's'}` : `failed: ${r.message}`;
      lines.push(`LOOKUP ${request.sql} with ${JSON.stringify(request.params)}: ${outcome}`);
    }
  }
  const result = evaluate(change, rules, emptyEvaluation(), lookups);
  if (!rules.byTable.has(`${name.schema}.${name.table}`)) {
    lines.push(`no rule maps ${name.schema}.${name.table}`);
  }
  // Distinct, as the sink applies them: a key named by several rules is touched once.
  const ops = new Set(result.operations.map(describe));
  lines.push(...ops);
  for (const f of result.fallbacks) lines.push(`fallback (${f.reason}) from ${f.rule}: ${f.detail}`);
  for (const d of result.deadLetters) lines.push(`dead letter (${d.reason}): ${d.detail}`);
  if (lines.length === 0) lines.push('no key operations');
  return { ok: true, text: `${lines.join('\n')}\n` };
}

function describe(o: KeyOperation): string {
  switch (o.action) {
    case 'delete':
      return `DEL ${o.key}`;
    case 'bump':
      return `BUMP ${o.key} (commit position; INCR where the source has none)`;
    case 'tag':
      return `TAG ${o.tag} (every key in the set tag:${o.tag}, then the set)`;
    case 'pattern':
      return `PATTERN ${o.pattern} (SCAN + delete)`;
  }
}

function parseRow(flag: string, text: string | undefined): Row | null | string {
  if (text === undefined) return null;
  let value: unknown;
  try {
    // Numbers keep the digits as written (an int8 id past 2^53, numeric 1.50): a dry run must
    // name the very key the worker would. (Node 22+ passes the source text to the reviver.)
    value = JSON.parse(text, (_key, v: unknown, context?: { source?: string }) =>
      typeof v === 'number' && context?.source !== undefined ? new JsonNumber(context.source) : v,
    );
  } catch (err) {
    return `${flag} is not valid JSON: ${(err as Error).message}`;
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value) || value instanceof JsonNumber) {
    return `${flag} must be a JSON object of column values`;
  }
  const row: Record<string, string | null> = Object.create(null);
  for (const [column, v] of Object.entries(value)) {
    if (v === null) row[column] = null;
    else if (typeof v === 'string') row[column] = v;
    else if (v instanceof JsonNumber) row[column] = v.text;
    else if (typeof v === 'number' || typeof v === 'boolean') row[column] = String(v);
    else return `${flag}: column "${column}" must be a string, number, boolean or null`;
  }
  return row;
}

class JsonNumber {
  constructor(readonly text: string) {}
}

/**
 * `explain --rule`: the rules of a mapping file (`mappings/x.yaml`), of one rule of it
 * (`mappings/x.yaml#rules[0]`), or of every file (`all`), in mapping syntax. A query rule shows as the
 * table rules derived from it, which can be read, tested or copied into a mapping file as they are.
 */
export function explainRules(rules: RuleSet, ref: string): { ok: true; text: string } | { ok: false; error: string } {
  const all = [...rules.byTable.values()].flat().filter((rule) => rule.spec !== undefined);
  const wanted = ref === 'all' ? all : all.filter((rule) => rule.file === ref || baseId(rule.id) === ref);
  if (wanted.length === 0) {
    const known = [...new Set(all.map((rule) => baseId(rule.id)))].sort();
    return { ok: false, error: `--rule ${ref} matches no rule (rules: ${known.join(', ') || 'none'}; or a mapping file, or all)` };
  }
  wanted.sort((a, b) => (a.file !== b.file ? (a.file < b.file ? -1 : 1) : a.index !== b.index ? a.index - b.index : a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  const blocks = wanted.map((rule) => {
    const derived = rule.id !== baseId(rule.id);
    const heading = derived ? `# ${rule.id}: derived from the query of ${baseId(rule.id)}` : `# ${rule.id}`;
    const doc = new Document([rule.spec]);
    // Lists of names and keys on one line, as mapping files usually write them.
    visit(doc, {
      Seq(_, node) {
        if (node.items.every((item) => isScalar(item))) node.flow = true;
      },
    });
    return `${heading}\n${doc.toString({ lineWidth: 0, flowCollectionPadding: false }).trimEnd()}`;
  });
  return { ok: true, text: `rules:\n${blocks.map((b) => indent(b)).join('\n')}\n` };
}

/** `file#rules[i]` of a rule id, without a query rule's `(alias)`. */
function baseId(id: string): string {
  const open = id.lastIndexOf('](');
  return open < 0 ? id : id.slice(0, open + 1);
}

function indent(text: string): string {
  return text
    .split('\n')
    .map((line) => (line === '' ? line : `  ${line}`))
    .join('\n');
}
