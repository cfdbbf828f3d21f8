import { isScalar } from 'yaml';
import type { FileProblem } from '../errors.js';
import type { YamlDocument } from './yaml-document.js';

export type Env = Readonly<Record<string, string | undefined>>;

const NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
/** A scalar that is one reference and nothing else: its result is typed like a YAML plain scalar. */
const WHOLE_REFERENCE = /^\$\{[^}]*\}$/;

type Expansion = { ok: true; text: string } | { ok: false; message: string };

/**
 * Expands `${NAME}` and `${NAME:-default}` (default when unset or empty, as in the shell) in one
 * string; `$${` is a literal `${`. Any other `$` is left alone.
 */
export function expandEnv(text: string, env: Env): Expansion {
  let out = '';
  let i = 0;
  while (i < text.length) {
    if (text.startsWith('$${', i)) {
      out += '${';
      i += 3;
      continue;
    }
    if (!text.startsWith('${', i)) {
      out += text[i];
      i += 1;
      continue;
    }
    const end = text.indexOf('}', i + 2);
    if (end < 0) {
      return { ok: false, message: 'unclosed "${" (write "$${" for a literal "${")' };
    }
    const body = text.slice(i + 2, end);
    const split = body.indexOf(':-');
    const name = split < 0 ? body : body.slice(0, split);
    const fallback = split < 0 ? undefined : body.slice(split + 2);
    if (!NAME.test(name)) {
      return { ok: false, message: `"\${${body}}" is not a valid reference: write \${NAME} or \${NAME:-default}` };
    }
    if (fallback?.includes('${')) {
      return { ok: false, message: `nested references are not supported in the default of \${${name}}` };
    }
    const value = env[name];
    if (value === undefined || (value === '' && fallback !== undefined)) {
      if (fallback === undefined) {
        return {
          ok: false,
          message: `environment variable ${name} is not set (give a default with \${${name}:-value})`,
        };
      }
      out += fallback;
    } else {
      out += value;
    }
    i = end + 1;
  }
  return { ok: true, text: out };
}

/**
 * Substitutes environment references in the string values of a parsed config document, in place.
 *
 * Working on parsed scalars rather than on the raw text means a value can never inject YAML
 * structure (a password holding `: ` or ` #` stays one string) and every position stays exact.
 * A plain scalar that was wholly one reference is then typed the way YAML types plain scalars, so
 * `port: ${PORT}` is a number; quoting it (`"${PORT}"`) keeps a string.
 */
export function substituteEnv(document: YamlDocument, env: Env): FileProblem[] {
  const problems: FileProblem[] = [];
  document.visitValueScalars((scalar, path) => {
    if (typeof scalar.value !== 'string' || !scalar.value.includes('${')) return;
    const source = scalar.value;
    const expanded = expandEnv(source, env);
    if (!expanded.ok) {
      problems.push(document.problem(path, expanded.message));
      return;
    }
    scalar.value =
      scalar.type === 'PLAIN' && WHOLE_REFERENCE.test(source) ? resolvePlain(document, expanded.text) : expanded.text;
  });
  return problems;
}

function resolvePlain(document: YamlDocument, text: string): unknown {
  // YAML reads an empty plain scalar as null; `keyPrefix: ${PREFIX:-}` means the empty string.
  if (text === '') return text;
  const { tags, options } = document.schemaTags;
  for (const tag of tags) {
    if (tag.default !== true || tag.test === undefined || !tag.test.test(text)) continue;
    const value = tag.resolve(text, () => undefined, options);
    return isScalar(value) ? value.value : value;
  }
  return text;
}
