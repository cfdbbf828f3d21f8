// Summarises a V8 .cpuprofile (node --cpu-prof): where the worker's CPU time went, by function (self
// and inclusive) and by module, ignoring idle samples. Also runnable on its own:
//   node bench/build/bench/cpu-profile.js FILE.cpuprofile
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { SourceMap } from 'node:module';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number; columnNumber: number };
  hitCount?: number;
  children?: number[];
}

interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

export interface ProfileRow {
  name: string;
  ms: number;
  percent: number;
}

export interface ProfileSummary {
  file: string;
  /** CPU time sampled, idle excluded, ms. */
  busyMs: number;
  idleMs: number;
  selfByFunction: ProfileRow[];
  totalByFunction: ProfileRow[];
  selfByModule: ProfileRow[];
}

const IDLE = new Set(['(idle)', '(program)']);

/** `/…/dist/runtime/worker.js` → `src/runtime/worker.ts`; node_modules → package; node: kept. */
export function moduleOf(url: string): string {
  if (url === '') return '(native)';
  const path = url.startsWith('file://') ? fileURLToPath(url) : url;
  const nm = path.lastIndexOf('/node_modules/');
  if (nm >= 0) {
    const rest = path.slice(nm + '/node_modules/'.length).split('/');
    return rest[0]!.startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0]!;
  }
  const dist = /\/dist\/(.*)\.js$/.exec(path);
  if (dist) return `src/${dist[1]}.ts`;
  return path;
}

const sourceMaps = new Map<string, SourceMap | null>();

/** The TypeScript line of a position in dist/ (from the .js.map tsc wrote), 1-based. */
function originalLine(path: string, line: number, column: number): number | undefined {
  let map = sourceMaps.get(path);
  if (map === undefined) {
    map = null;
    try {
      if (existsSync(`${path}.map`)) map = new SourceMap(JSON.parse(readFileSync(`${path}.map`, 'utf8')));
    } catch {
      // no usable map: JS line numbers then
    }
    sourceMaps.set(path, map);
  }
  const entry = map?.findEntry(line, column);
  return entry !== undefined && 'originalLine' in entry ? entry.originalLine + 1 : undefined;
}

function nameOf(node: ProfileNode): string {
  const { functionName, url, lineNumber, columnNumber } = node.callFrame;
  const fn = functionName === '' ? '(anonymous)' : functionName;
  if (url === '') return fn;
  const path = url.startsWith('file://') ? fileURLToPath(url) : url;
  const nm = path.lastIndexOf('/node_modules/');
  if (nm >= 0) return `${fn} ${path.slice(nm + '/node_modules/'.length)}:${lineNumber + 1}`;
  if (/\/dist\/.*\.js$/.test(path)) {
    const ts = originalLine(path, lineNumber, columnNumber);
    if (ts !== undefined) return `${fn} ${moduleOf(url)}:${ts}`;
    return `${fn} ${relative(resolve(dirname(path), '..'), path)}:${lineNumber + 1} (js)`;
  }
  return `${fn} ${path}:${lineNumber + 1}`;
}

export function summarise(file: string, top = 25): ProfileSummary {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as Profile;
  const byId = new Map<number, ProfileNode>();
  const parent = new Map<number, number>();
  for (const node of profile.nodes) {
    byId.set(node.id, node);
    for (const child of node.children ?? []) parent.set(child, node.id);
  }
  // timeDeltas[i] is the time since the previous sample: it is charged to sample i.
  const self = new Map<string, number>();
  const total = new Map<string, number>();
  const modules = new Map<string, number>();
  let busyUs = 0;
  let idleUs = 0;
  for (let i = 0; i < profile.samples.length; i++) {
    const us = profile.timeDeltas[i] ?? 0;
    const node = byId.get(profile.samples[i]!);
    if (node === undefined) continue;
    if (node.callFrame.functionName === '(idle)') {
      idleUs += us;
      continue;
    }
    busyUs += us;
    const name = nameOf(node);
    self.set(name, (self.get(name) ?? 0) + us);
    const mod = IDLE.has(node.callFrame.functionName) || node.callFrame.functionName === '(garbage collector)'
      ? node.callFrame.functionName
      : moduleOf(node.callFrame.url);
    modules.set(mod, (modules.get(mod) ?? 0) + us);
    const seen = new Set<string>();
    for (let id: number | undefined = node.id; id !== undefined; id = parent.get(id)) {
      const n = byId.get(id)!;
      if (n.callFrame.functionName === '(root)') break;
      const key = nameOf(n);
      if (seen.has(key)) continue;
      seen.add(key);
      total.set(key, (total.get(key) ?? 0) + us);
    }
  }
  const rows = (m: Map<string, number>, filter: (name: string) => boolean = () => true): ProfileRow[] =>
    [...m]
      .filter(([name]) => filter(name))
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([name, us]) => ({ name, ms: Math.round(us / 100) / 10, percent: Math.round((1000 * us) / busyUs) / 10 }));
  return {
    file,
    busyMs: Math.round(busyUs / 1000),
    idleMs: Math.round(idleUs / 1000),
    selfByFunction: rows(self),
    // Inclusive time is most telling for the project's own functions.
    totalByFunction: rows(total, (name) => / src\//.test(name)),
    selfByModule: rows(modules),
  };
}

export function formatSummary(s: ProfileSummary): string {
  const table = (title: string, rows: ProfileRow[]) =>
    [`  ${title}`, ...rows.map((r) => `    ${r.percent.toFixed(1).padStart(5)}%  ${r.ms.toFixed(0).padStart(7)} ms  ${r.name}`)].join('\n');
  return [
    `CPU profile ${s.file}: ${s.busyMs} ms busy, ${s.idleMs} ms idle (percentages of busy time)`,
    table('self time by module', s.selfByModule),
    table('self time by function', s.selfByFunction),
    table('inclusive time, project functions', s.totalByFunction),
  ].join('\n');
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  const file = process.argv[2];
  if (file === undefined) {
    process.stderr.write('usage: node bench/build/bench/cpu-profile.js FILE.cpuprofile\n');
    process.exitCode = 2;
  } else {
    process.stdout.write(`${formatSummary(summarise(file, Number(process.argv[3] ?? 25)))}\n`);
  }
}

/** The most recent .cpuprofile file node wrote into `dir`. */
export function newestProfile(dir: string): string | undefined {
  let best: { file: string; mtime: number } | undefined;
  for (const name of readdirSync(dir)) {
    if (!name.endsWith('.cpuprofile')) continue;
    const file = join(dir, name);
    const mtime = statSync(file).mtimeMs;
    if (best === undefined || mtime > best.mtime) best = { file, mtime };
  }
  return best?.file;
}
