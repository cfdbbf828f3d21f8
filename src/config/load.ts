import { readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { lostChangesOperations } from '../core/recovery.js';
import { compileRules, type MappingSpec, type RuleSet } from '../core/rules.js';
import { queryText } from '../core/query-rules.js';
import { loadSqlParser, type ParseSql } from '../lib/sql-parser.js';
import { ConfigError, type FileProblem } from '../errors.js';
import { configSchema, mappingFileSchema, ruleSchema, type Config, type Rule } from './schema.js';
import { substituteEnv, type Env } from './substitute-env.js';
import { replicaIdentityProblems } from './table-identities.js';
import { validate } from './validate.js';
import { parseYaml, type YamlDocument } from './yaml-document.js';

export interface LoadedConfig {
  /** Absolute path of the config file. */
  configFile: string;
  config: Config;
  /** Absolute paths of the mapping files read, sorted. */
  mappingFiles: string[];
  rules: RuleSet;
  warnings: FileProblem[];
  /** A problem found later in a mapping file (at start, against the database), with its line and column. */
  place(problem: { file: string; path: (string | number)[]; message: string }): FileProblem;
}

const MAPPING_FILE = /\.ya?ml$/i;

/**
 * Reads and checks the config file and every mapping file it points to, and compiles the rules.
 * Every problem in every file is collected before anything is thrown, so a user fixes them all in
 * one pass; the one error thrown is a ConfigError listing them with file, line, column and path.
 */
export async function loadConfig(configPath: string, env: Env): Promise<LoadedConfig> {
  const configFile = path.resolve(configPath);
  const problems: FileProblem[] = [];

  const text = await readText(configFile, 'config file');
  if (typeof text !== 'string') throw new ConfigError([text]);
  const parsed = parseYaml(configFile, text);
  problems.push(...parsed.problems);
  if (parsed.empty) {
    problems.push(wholeFile(configFile, 'config file is empty: it needs at least "source" and "mappings"'));
  }
  const document = parsed.document;
  if (document === null || parsed.empty) throw failure(problems, [configFile]);

  const envProblems = substituteEnv(document, env);
  problems.push(...envProblems);
  const data = document.toJS();
  const validated = validate(configSchema, document, data);
  // A value whose reference could not be substituted is reported once, for that reason, not also
  // for what the schema makes of the unsubstituted text.
  if (!validated.ok) problems.push(...validated.problems.filter((p) => !envProblems.some((e) => e.path === p.path)));

  // The mappings are checked even when the rest of the config is not valid, so that one run shows
  // every problem; only a `mappings` value that is itself broken stops that.
  const mappingsValue = isRecord(data) ? data['mappings'] : undefined;
  const mappingsUsable =
    typeof mappingsValue === 'string' && mappingsValue !== '' && !envProblems.some((p) => p.path === 'mappings');
  let mappings: MappingsResult = { files: [], specs: [], problems: [], documents: new Map() };
  if (mappingsUsable) mappings = await loadMappings(document, path.dirname(configFile), mappingsValue);
  problems.push(...mappings.problems);

  // Query rules: PostgreSQL's parser runs once, in a child process, for all of them.
  const queries = mappings.specs.flatMap((spec) => spec.rules.flatMap((rule) => (rule?.query === undefined ? [] : [queryText(rule.query)])));
  let parseSql: ParseSql | undefined;
  if (queries.length > 0) {
    try {
      parseSql = await loadSqlParser(queries);
    } catch (err) {
      problems.push(document.problem(['mappings'], `query rules need PostgreSQL's parser, which did not run: ${err instanceof Error ? err.message : String(err)}`));
    }
  }
  const compiled = compileRules(mappings.specs, { parseSql });
  for (const problem of compiled.problems) {
    const doc = mappings.documents.get(problem.file);
    if (doc !== undefined) {
      problems.push(doc.problem(problem.path, problem.message, { severity: problem.severity ?? 'error' }));
    }
  }
  if (validated.ok && validated.data.source.kind === 'debezium' && compiled.rules.hasLookups && validated.data.source.url === undefined) {
    problems.push(document.problem(['source'], 'rules with a lookup need a database to query: set source.url (a PostgreSQL connection string)'));
  }
  if (isRecord(data) && data['memcached'] !== undefined && data['redis'] !== undefined) {
    problems.push(document.problem(['memcached'], 'give redis or memcached, not both: the worker writes to one cache'));
  }
  if (validated.ok && validated.data.memcached !== undefined) {
    for (const rule of [...compiled.rules.byTable.values()].flat()) {
      const doc = mappings.documents.get(rule.file);
      const sets = rule.actions.tags.length > 0 || (rule.fallback?.tags.length ?? 0) > 0;
      const scans = rule.actions.patterns.length > 0 || (rule.fallback?.patterns.length ?? 0) > 0;
      if (doc === undefined || (!sets && !scans)) continue;
      const derived = rule.id.endsWith(')');
      const where = derived ? ['rules', rule.index, 'coarse'] : ['rules', rule.index, sets ? (rule.actions.tags.length > 0 ? 'tags' : 'fallback') : rule.actions.patterns.length > 0 ? 'patterns' : 'fallback'];
      const problem = doc.problem(
        where,
        `memcached has no sets and no SCAN, so ${sets ? 'tags' : 'patterns'} cannot be invalidated there: name the keys (invalidate), or bump a version key the application reads, or use Redis`,
      );
      if (!problems.some((p) => p.file === problem.file && p.line === problem.line && p.column === problem.column)) problems.push(problem);
    }
  }
  if (validated.ok && validated.data.source.kind === 'debezium' && validated.data.consistency.replicas.length > 0) {
    problems.push(
      document.problem(
        ['consistency', 'replicas'],
        'replicas are supported with source.kind postgres only: a Debezium event carries the position of its change, not of its commit',
      ),
    );
  }
  // Only against rules that compiled: a broken mapping file would make every name look unknown.
  if (!mappings.problems.some((p) => p.severity === 'error') && !compiled.problems.some((p) => (p.severity ?? 'error') === 'error')) {
    problems.push(...replicaIdentityProblems(data, compiled.rules, document));
  }
  if (validated.ok && validated.data.source.kind === 'postgres' && validated.data.source.slotLost === 'recover') {
    const { rulesWithoutFallback } = lostChangesOperations(compiled.rules, null);
    if (rulesWithoutFallback.length > 0) {
      problems.push(
        document.problem(
          ['source', 'slotLost'],
          `"recover" runs every rule's fallback when the slot loses changes, but these rules have none: ` +
            `${rulesWithoutFallback.join(', ')} (give each a fallback, or use "fail")`,
        ),
      );
    }
  }
  const hasErrors = () => problems.some((p) => p.severity === 'error');
  // Only worth saying once nothing else is wrong: a broken rule also leaves the rule set empty.
  if (!hasErrors() && compiled.rules.tables.length === 0) {
    problems.push(document.problem(['mappings'], 'the mapping files define no rule: there is nothing to invalidate'));
  }

  if (!validated.ok || hasErrors()) {
    throw failure(problems, [configFile, ...mappings.files]);
  }
  return {
    configFile,
    config: validated.data,
    mappingFiles: mappings.files,
    rules: compiled.rules,
    warnings: sortProblems(problems, [configFile, ...mappings.files]),
    place: (p) =>
      mappings.documents.get(p.file)?.problem(p.path, p.message, { severity: 'error' }) ??
      { file: p.file, path: p.path.join('.'), message: p.message, severity: 'error' },
  };
}

interface MappingsResult {
  files: string[];
  /** Rules fit for the compiler, one spec per file (or per rule of a file with schema problems). */
  specs: MappingSpec[];
  problems: FileProblem[];
  /** Parsed mapping files by the name given to the compiler, to place its problems. */
  documents: Map<string, YamlDocument>;
}

async function loadMappings(config: YamlDocument, configDir: string, value: string): Promise<MappingsResult> {
  const target = path.resolve(configDir, value);
  const here = (message: string): MappingsResult => ({
    files: [],
    specs: [],
    problems: [config.problem(['mappings'], message)],
    documents: new Map(),
  });

  let files: string[];
  try {
    const info = await stat(target);
    if (info.isDirectory()) {
      files = await listMappingFiles(target);
      if (files.length === 0) return here(`directory "${value}" (${target}) holds no *.yaml or *.yml mapping file`);
    } else {
      files = [target];
    }
  } catch (err) {
    const code = errorCode(err);
    if (code === 'ENOENT' || code === 'ENOTDIR') return here(`"${value}" does not exist (looked for ${target})`);
    return here(`cannot read "${value}" (${target}): ${code ?? 'unknown error'}`);
  }

  const specs: MappingSpec[] = [];
  const problems: FileProblem[] = [];
  const documents = new Map<string, YamlDocument>();
  for (const file of files) {
    // Rule ids (`mappings/users.yaml#rules[0]`) end up in logs and dead letters: keep them
    // independent of where the deployment happens to put the config folder.
    const name = path.relative(configDir, file).split(path.sep).join('/');
    const text = await readText(file, 'mapping file');
    if (typeof text !== 'string') {
      problems.push(text);
      continue;
    }
    const parsed = parseYaml(file, text);
    problems.push(...parsed.problems);
    if (parsed.empty) problems.push(wholeFile(file, 'mapping file is empty: it needs a "rules:" list'));
    if (parsed.document === null || parsed.empty) continue;
    documents.set(name, parsed.document);

    const data = parsed.document.toJS();
    const validated = validate(mappingFileSchema, parsed.document, data);
    if (validated.ok) {
      if (validated.data.rules.length === 0) {
        problems.push(parsed.document.problem(['rules'], '"rules" is empty: this file maps no table', { severity: 'warning' }));
      }
      specs.push({ file: name, rules: validated.data.rules });
    } else {
      problems.push(...validated.problems);
      specs.push(...salvageRules(name, data));
    }
  }
  return { files, specs, problems, documents };
}

/**
 * For a file that failed the schema, the rules that pass it on their own still go through the
 * compiler, so template and table problems show up in the same run. Each becomes its own spec
 * so that the compiler's `rules[i]` paths keep the index they have in the file.
 */
function salvageRules(name: string, data: unknown): MappingSpec[] {
  const rules = isRecord(data) ? data['rules'] : undefined;
  if (!Array.isArray(rules)) return [];
  return rules.flatMap((raw: unknown, index): MappingSpec[] => {
    const result = ruleSchema.safeParse(raw);
    if (!result.success) return [];
    const padded: Rule[] = new Array<Rule>(index + 1);
    padded[index] = result.data;
    return [{ file: name, rules: padded }];
  });
}

/**
 * Every *.yaml / *.yml below `dir`, sorted. Entries whose name starts with a dot are skipped:
 * a Kubernetes ConfigMap volume holds each file twice, once under a hidden `..data` folder.
 */
async function listMappingFiles(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  const files: string[] = [];
  for (const entry of entries) {
    const full = path.join(entry.parentPath, entry.name);
    const hidden = path.relative(dir, full).split(path.sep).some((part) => part.startsWith('.'));
    if (hidden || !MAPPING_FILE.test(entry.name)) continue;
    // A symlink (as in a ConfigMap) is read like a file; if it points nowhere, reading says so.
    if (entry.isFile() || entry.isSymbolicLink()) files.push(full);
  }
  return files.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

async function readText(file: string, what: 'config file' | 'mapping file'): Promise<string | FileProblem> {
  try {
    return await readFile(file, 'utf8');
  } catch (err) {
    const code = errorCode(err);
    const hint = what === 'config file' ? ' (give its path with --config FILE)' : '';
    const message =
      code === 'ENOENT'
        ? `${what} not found${hint}`
        : code === 'EISDIR'
          ? `${what} is a directory, not a file${hint}`
          : code === 'EACCES' || code === 'EPERM'
            ? `cannot read the ${what}: permission denied`
            : `cannot read the ${what}: ${code ?? 'unknown error'}`;
    return { file, path: '', message, severity: 'error' };
  }
}

function wholeFile(file: string, message: string): FileProblem {
  return { file, line: 1, column: 1, path: '', message, severity: 'error' };
}

function errorCode(err: unknown): string | undefined {
  const code = isRecord(err) ? err['code'] : undefined;
  return typeof code === 'string' ? code : undefined;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function failure(problems: FileProblem[], fileOrder: string[]): ConfigError {
  return new ConfigError(sortProblems(problems, fileOrder));
}

/** Files in reading order, then by position: the order in which a user would fix them. */
function sortProblems(problems: FileProblem[], fileOrder: string[]): FileProblem[] {
  const rank = (file: string) => {
    const i = fileOrder.indexOf(file);
    return i < 0 ? fileOrder.length : i;
  };
  return [...problems].sort(
    (a, b) => rank(a.file) - rank(b.file) || (a.line ?? 0) - (b.line ?? 0) || (a.column ?? 0) - (b.column ?? 0),
  );
}
