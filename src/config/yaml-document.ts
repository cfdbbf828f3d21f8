import { isAlias, isMap, isPair, isScalar, isSeq, LineCounter, parseAllDocuments, visit } from 'yaml';
import type { Document, Node, Scalar } from 'yaml';
import type { FileProblem } from '../errors.js';

/** A path inside a YAML document, as zod and the rules compiler report it: ['rules', 2, 'invalidate', 0]. */
export type DocPath = ReadonlyArray<PropertyKey>;

export interface Position {
  line: number;
  column: number;
}

/** Whether a problem is about a key itself (unknown, not allowed, duplicated) or about its value. */
export type Target = 'key' | 'value';

const IDENTIFIER = /^[A-Za-z_$][A-Za-z0-9_$-]*$/;

/** Renders a path the way users write it: `rules[2].invalidate[0]`; the root is ''. */
export function formatPath(path: DocPath): string {
  let out = '';
  for (const segment of path) {
    if (typeof segment === 'number') out += `[${segment}]`;
    else {
      const name = String(segment);
      out += IDENTIFIER.test(name) ? (out === '' ? name : `.${name}`) : `[${JSON.stringify(name)}]`;
    }
  }
  return out;
}

/** Called for a scalar with the document path that leads to it. */
export type ScalarVisitor = (scalar: Scalar, path: DocPath) => void;

/**
 * One parsed YAML file that still knows where everything came from, so every later problem (schema,
 * rules, environment) can name the line and column the user has to look at.
 */
export class YamlDocument {
  constructor(
    readonly file: string,
    private readonly doc: Document.Parsed,
    private readonly lineCounter: LineCounter,
  ) {}

  /** True when the file holds nothing but whitespace, comments or an empty document. */
  get isEmpty(): boolean {
    const root = this.doc.contents;
    return root === null || (isScalar(root) && root.value === null && root.source === '');
  }

  toJS(): unknown {
    return this.doc.toJS();
  }

  /** The tags YAML would try on a plain scalar, for re-resolving a substituted value. */
  get schemaTags() {
    return { tags: this.doc.schema.tags, options: this.doc.options };
  }

  problem(
    path: DocPath,
    message: string,
    options: { target?: Target; severity?: FileProblem['severity'] } = {},
  ): FileProblem {
    const { line, column } = this.positionOf(path, options.target ?? 'value');
    return { file: this.file, line, column, path: formatPath(path), message, severity: options.severity ?? 'error' };
  }

  /**
   * Where a path points. A missing key points at the map that should hold it; an empty value
   * (`url:` with nothing after it) at its key, since the empty scalar's own position is wherever
   * the parser stopped looking.
   */
  positionOf(path: DocPath, target: Target = 'value'): Position {
    let node: unknown = this.doc.contents;
    let fallback = 0;
    for (let i = 0; i < path.length; i++) {
      if (isAlias(node)) node = node.resolve(this.doc);
      const segment = path[i];
      if (isMap(node)) {
        const pair = node.items.find((p) => isScalar(p.key) && String(p.key.value) === String(segment));
        if (pair === undefined) return this.at(node, fallback);
        const keyOffset = offsetOf(pair.key, fallback);
        if (i === path.length - 1 && target === 'key') return this.linePos(keyOffset);
        if (pair.value === null || isEmptyScalar(pair.value)) return this.linePos(keyOffset);
        fallback = keyOffset;
        node = pair.value;
      } else if (isSeq(node) && typeof segment === 'number') {
        const item: unknown = node.items[segment];
        if (item === undefined) return this.at(node, fallback);
        node = item;
      } else {
        break;
      }
    }
    return this.at(node, fallback);
  }

  /** Visits every scalar in a value position (not keys), with its document path. */
  visitValueScalars(visit: ScalarVisitor): void {
    const walk = (node: unknown, path: PropertyKey[]): void => {
      if (isScalar(node)) visit(node, path);
      else if (isMap(node)) {
        for (const pair of node.items) {
          if (isScalar(pair.key)) walk(pair.value, [...path, String(pair.key.value)]);
        }
      } else if (isSeq(node)) node.items.forEach((item, i) => walk(item, [...path, i]));
    };
    walk(this.doc.contents, []);
  }

  /**
   * YAML's own duplicate-key error names neither the key nor the path; this one does both, and
   * points at the second occurrence.
   */
  duplicateKeys(): FileProblem[] {
    const problems: FileProblem[] = [];
    const walk = (node: unknown, path: PropertyKey[]): void => {
      if (isMap(node)) {
        const seen = new Map<string, Node>();
        for (const pair of node.items) {
          if (!isPair(pair) || !isScalar(pair.key)) continue;
          const name = String(pair.key.value);
          const first = seen.get(name);
          if (first !== undefined) {
            // Not this.problem(path): a path lookup would find the first occurrence.
            const firstLine = this.linePos(offsetOf(first, 0)).line;
            problems.push({
              file: this.file,
              ...this.linePos(offsetOf(pair.key, 0)),
              path: formatPath([...path, name]),
              message: `duplicate key "${name}" (first given on line ${firstLine})`,
              severity: 'error',
            });
          } else {
            seen.set(name, pair.key);
          }
          walk(pair.value, [...path, name]);
        }
      } else if (isSeq(node)) node.items.forEach((item, i) => walk(item, [...path, i]));
    };
    walk(this.doc.contents, []);
    return problems;
  }

  private at(node: unknown, fallback: number): Position {
    return this.linePos(offsetOf(node, fallback));
  }

  private linePos(offset: number): Position {
    const { line, col } = this.lineCounter.linePos(offset);
    return { line, column: col };
  }
}

function offsetOf(node: unknown, fallback: number): number {
  const range = (node as { range?: [number, number, number] | null } | null)?.range;
  return range?.[0] ?? fallback;
}

function isEmptyScalar(node: unknown): boolean {
  return isScalar(node) && node.value === null && node.source === '';
}

/**
 * A parser message may quote the offending token; in a config file that token can be part of a
 * connection string, so it is dropped. Line and column say where to look.
 */
function sanitizeParserMessage(message: string): string {
  return message
    .replace(/:\s*".*"$/s, '')
    .replace(/closing (["'])quote/, (_, q: string) => `closing ${q === '"' ? 'double' : 'single'} quote`)
    .replace(/\s+/g, ' ')
    .trim();
}

/**
 * Parses one YAML file into a document that keeps positions. A syntax error yields only the first
 * problem: the parser's later errors are nearly always echoes of it.
 */
export function parseYaml(
  file: string,
  text: string,
): { document: YamlDocument | null; empty: boolean; problems: FileProblem[] } {
  const lineCounter = new LineCounter();
  // Duplicate keys are reported by YamlDocument.duplicateKeys, with names and paths.
  const docs = parseAllDocuments(text, { lineCounter, prettyErrors: false, uniqueKeys: false });
  const where = (offset: number) => {
    const { line, col } = lineCounter.linePos(offset);
    return { file, line, column: col };
  };
  // A file of only comments is a stream with no document at all; callers decide if that is fine.
  if (!Array.isArray(docs) || docs.length === 0) return { document: null, empty: true, problems: [] };
  const problems: FileProblem[] = [];
  const first = docs[0]!;
  const error = docs.flatMap((d) => d.errors)[0];
  if (error !== undefined) {
    const message = `YAML syntax error: ${sanitizeParserMessage(error.message)}`;
    problems.push({ ...where(error.pos[0]), path: '', message, severity: 'error' });
    return { document: null, empty: false, problems };
  }
  if (docs.length > 1) {
    const second = docs[1]!;
    problems.push({
      ...where(second.range[0]),
      path: '',
      message: `the file holds ${docs.length} YAML documents (separated by "---"); put everything in one`,
      severity: 'error',
    });
    return { document: null, empty: false, problems };
  }
  for (const warning of first.warnings) {
    const message = sanitizeParserMessage(warning.message);
    problems.push({ ...where(warning.pos[0]), path: '', message, severity: 'warning' });
  }
  const aliasProblem = checkAliases(first, where);
  if (aliasProblem !== null) return { document: null, empty: false, problems: [...problems, aliasProblem] };
  const document = new YamlDocument(file, first, lineCounter);
  problems.push(...document.duplicateKeys());
  return { document, empty: document.isEmpty, problems };
}

/**
 * An alias to an anchor that does not exist, or aliases that expand without bound (an "alias
 * bomb"), make the document unreadable: said once, at the alias, instead of failing later.
 */
function checkAliases(
  doc: Document.Parsed,
  where: (offset: number) => { file: string; line: number; column: number },
): FileProblem | null {
  let unresolved: { offset: number; source: string } | null = null;
  visit(doc, {
    Alias(_key, node) {
      if (node.resolve(doc) === undefined) {
        unresolved = { offset: node.range?.[0] ?? 0, source: node.source };
        return visit.BREAK;
      }
      return undefined;
    },
  });
  if (unresolved !== null) {
    const u = unresolved as { offset: number; source: string };
    return { ...where(u.offset), path: '', message: `alias *${u.source} names no anchor (&${u.source}) before it`, severity: 'error' };
  }
  try {
    doc.toJS({ maxAliasCount: 1000 });
  } catch (err) {
    return { ...where(0), path: '', message: `the aliases of this file expand too far (${(err as Error).message.replace(/\s+/g, ' ')})`, severity: 'error' };
  }
  return null;
}
