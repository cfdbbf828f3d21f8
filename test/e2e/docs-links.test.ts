// Every relative link of the project's Markdown lands on a file that exists and, when it names a
// heading, on a heading of that file: the README points into docs/, docs/ into each other, and a
// section moved from one file to another must not leave a link behind.
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const FILES = ['README.md', 'RELIABILITY.md', 'CONSISTENCY.md', 'bench/README.md', ...readdirSync(join(ROOT, 'docs')).filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`)].filter((f) =>
  existsSync(join(ROOT, f)),
);

/** GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens. */
function anchors(markdown: string): Set<string> {
  const found = new Set<string>();
  let fence = false;
  for (const line of markdown.split('\n')) {
    if (line.startsWith('```')) fence = !fence;
    const m = !fence && /^#{1,6} (.*)$/.exec(line);
    if (m) found.add(m[1]!.replace(/`/g, '').toLowerCase().replace(/[^a-z0-9 _-]/g, '').replace(/ /g, '-'));
  }
  return found;
}

function links(markdown: string): string[] {
  const out: string[] = [];
  let fence = false;
  for (const line of markdown.split('\n')) {
    if (line.startsWith('```')) fence = !fence;
    if (fence) continue;
    // Inline code is not a link: `file#rules[2](c)` names a rule.
    for (const m of line.replace(/`[^`]*`/g, '').matchAll(/\]\(([^)\s]+)\)/g)) out.push(m[1]!);
  }
  return out;
}

describe('Markdown links', () => {
  it.each(FILES)('%s: every relative link and anchor resolves', (file) => {
    const text = readFileSync(join(ROOT, file), 'utf8');
    const broken: string[] = [];
    for (const url of links(text)) {
      if (/^[a-z]+:/.test(url)) continue;
      const [path, anchor] = url.split('#') as [string, string | undefined];
      const target = path === '' ? join(ROOT, file) : resolve(dirname(join(ROOT, file)), path);
      if (!existsSync(target)) {
        broken.push(`${url} (no ${relative(ROOT, target)})`);
        continue;
      }
      if (anchor !== undefined && anchor !== '' && statSync(target).isFile() && target.endsWith('.md') && !anchors(readFileSync(target, 'utf8')).has(anchor)) {
        broken.push(`${url} (no heading #${anchor} in ${relative(ROOT, target)})`);
      }
    }
    expect(broken).toEqual([]);
  });
});
