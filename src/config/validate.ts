import type { z } from 'zod';
import type { FileProblem } from '../errors.js';
import type { DocPath, YamlDocument } from './yaml-document.js';
import { suggest } from '../lib/suggest.js';

/**
 * Turns zod's issues into messages for a person editing a YAML file: YAML words (map, list), the
 * value that was given, and a suggestion for a misspelt key or option.
 */

/** Values under these paths can hold credentials; messages describe their type, never the value. */
const SECRET_PATHS = [['source', 'url'], ['redis', 'url'], ['redis', 'cluster'], ['redis', 'sentinel', 'nodes'], ['redis', 'sentinel', 'password']] as const;

function isSecret(path: DocPath): boolean {
  return SECRET_PATHS.some((secret) => secret.every((segment, i) => path[i] === segment));
}

const TYPE_NAMES: Record<string, string> = {
  string: 'a string',
  number: 'a number',
  int: 'a whole number',
  boolean: 'true or false',
  array: 'a list',
  object: 'a map',
  null: 'nothing',
};

function describe(value: unknown, path: DocPath): string {
  if (value === null) return 'an empty value';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a map';
  if (isSecret(path)) return TYPE_NAMES[typeof value] ?? typeof value;
  if (typeof value === 'string') {
    // Any string can be a connection string given in the wrong place: never show its password.
    const masked = value.replace(/([a-z][a-z0-9+.-]*:\/\/[^:@/\s]*):[^@\s]*@/gi, '$1:***@');
    const shown = masked.length > 60 ? `${masked.slice(0, 57)}...` : masked;
    return JSON.stringify(shown);
  }
  return String(value);
}

export { suggest };

const didYouMean = (hint: string | undefined) => (hint === undefined ? '' : ` (did you mean "${hint}"?)`);

type RawIssue = z.core.$ZodRawIssue;

/** Messages for zod's own issues. Messages written in the schema take precedence over these. */
function message(issue: RawIssue): string | undefined {
  const path = issue.path ?? [];
  const last = path[path.length - 1];
  const got = describe(issue.input, path);
  switch (issue.code) {
    case 'invalid_type':
      if (issue.input === undefined && typeof last === 'string') return `missing required key "${last}"`;
      return `expected ${TYPE_NAMES[issue.expected] ?? issue.expected}, got ${got}`;
    case 'invalid_value': {
      const values = issue.values.map(String);
      const hint = typeof issue.input === 'string' ? suggest(issue.input, values) : undefined;
      return `expected one of ${values.join(', ')}, got ${got}${didYouMean(hint)}`;
    }
    case 'too_small':
      if (issue.origin === 'string' && Number(issue.minimum) === 1) return 'must not be empty';
      if (issue.origin === 'array') return `must list at least ${String(issue.minimum)} item${Number(issue.minimum) === 1 ? '' : 's'}`;
      return `must be ${issue.inclusive === false ? 'more than' : 'at least'} ${String(issue.minimum)}, got ${got}`;
    case 'too_big':
      if (issue.origin === 'string') return `must be at most ${String(issue.maximum)} characters long`;
      if (issue.origin === 'array') return `must list at most ${String(issue.maximum)} items`;
      return `must be ${issue.inclusive === false ? 'less than' : 'at most'} ${String(issue.maximum)}, got ${got}`;
    case 'invalid_format':
      return `${got} is not a valid ${issue.format}`;
    default:
      return undefined;
  }
}

/**
 * Validates a parsed document. Unknown keys come back one problem each, pointing at the key; keys a
 * schema refuses by type `never` (not available in this version) also point at the key.
 */
export function validate<S extends z.ZodType>(
  schema: S,
  document: YamlDocument,
  data: unknown,
): { ok: true; data: z.output<S> } | { ok: false; problems: FileProblem[] } {
  const knownKeys = new Map<string, string[]>();
  const result = schema.safeParse(data, {
    error: (issue) => {
      if (issue.code === 'unrecognized_keys') {
        const shape = (issue.inst as { _zod?: { def?: { shape?: object } } } | undefined)?._zod?.def?.shape;
        knownKeys.set(JSON.stringify(issue.path ?? []), Object.keys(shape ?? {}));
        return 'unknown key';
      }
      return message(issue);
    },
  });
  if (result.success) return { ok: true, data: result.data };

  const problems: FileProblem[] = [];
  for (const issue of result.error.issues) {
    if (issue.code === 'unrecognized_keys') {
      const known = knownKeys.get(JSON.stringify(issue.path)) ?? [];
      for (const key of issue.keys) {
        const text = `unknown key "${key}"${didYouMean(suggest(key, known))}`;
        problems.push(document.problem([...issue.path, key], text, { target: 'key' }));
      }
      continue;
    }
    if (issue.code === 'invalid_key') {
      // A map key that breaks a rule (a lookup name): say what the rule is, at the key.
      const inner = issue.issues[0]?.message ?? issue.message;
      problems.push(document.problem(issue.path, `${inner}, got ${JSON.stringify(issue.path.at(-1))}`, { target: 'key' }));
      continue;
    }
    const target = issue.code === 'invalid_type' && issue.expected === 'never' ? 'key' : 'value';
    problems.push(document.problem(issue.path, issue.message, { target }));
  }
  return { ok: false, problems };
}
