// An SVG plot of live latency percentiles against commit rate, from a bench result file:
//   node bench/build/bench/plot.js RESULTS.json OUT.svg
// Log scale in ms; the worker's p50, p99 and p99.9 next to the decode-only floor's.
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { LiveRun } from './live.js';

interface Series {
  label: string;
  color: string;
  dashed: boolean;
  values: number[];
}

const W = 640;
const H = 400;
const M = { left: 64, right: 170, top: 40, bottom: 48 };

const escape = (text: string) => text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

export function latencyPlot(runs: ReadonlyArray<{ rate: number; floor: LiveRun; worker: LiveRun }>, title: string): string {
  const series: Series[] = [
    { label: 'worker p99.9', color: '#b2182b', dashed: false, values: runs.map((r) => r.worker.latencyMs.p999) },
    { label: 'worker p99', color: '#d6604d', dashed: false, values: runs.map((r) => r.worker.latencyMs.p99) },
    { label: 'worker p50', color: '#f4a582', dashed: false, values: runs.map((r) => r.worker.latencyMs.p50) },
    { label: 'floor p99', color: '#2166ac', dashed: true, values: runs.map((r) => r.floor.latencyMs.p99) },
    { label: 'floor p50', color: '#67a9cf', dashed: true, values: runs.map((r) => r.floor.latencyMs.p50) },
  ];
  const all = series.flatMap((s) => s.values).filter((v) => v > 0 && Number.isFinite(v));
  const lo = 10 ** Math.floor(Math.log10(Math.min(...all, 0.1)));
  const hi = 10 ** Math.ceil(Math.log10(Math.max(...all, 10)));
  const plotW = W - M.left - M.right;
  const plotH = H - M.top - M.bottom;
  const pad = 40;
  const x = (i: number) => M.left + (runs.length === 1 ? plotW / 2 : pad + (i * (plotW - 2 * pad)) / (runs.length - 1));
  const y = (v: number) => M.top + plotH - ((Math.log10(Math.max(v, lo)) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo))) * plotH;
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${M.left}" y="${M.top - 16}" font-size="14">${escape(title)}</text>`,
  ];
  for (let e = Math.log10(lo); e <= Math.log10(hi); e++) {
    const v = 10 ** e;
    parts.push(
      `<line x1="${M.left}" x2="${M.left + plotW}" y1="${y(v)}" y2="${y(v)}" stroke="#ddd"/>`,
      `<text x="${M.left - 8}" y="${y(v) + 4}" text-anchor="end">${v >= 1 ? v : v.toFixed(-e)}</text>`,
    );
  }
  runs.forEach((r, i) => parts.push(`<text x="${x(i)}" y="${M.top + plotH + 18}" text-anchor="middle">${r.rate.toLocaleString('en-US')}</text>`));
  parts.push(
    `<text x="${M.left + plotW / 2}" y="${H - 10}" text-anchor="middle">commits per second (pgbench -R)</text>`,
    `<text transform="translate(16 ${M.top + plotH / 2}) rotate(-90)" text-anchor="middle">ms from the UPDATE to its effect (log scale)</text>`,
    `<rect x="${M.left}" y="${M.top}" width="${plotW}" height="${plotH}" fill="none" stroke="#999"/>`,
  );
  series.forEach((s, k) => {
    const points = s.values.map((v, i) => `${x(i).toFixed(1)},${y(v).toFixed(1)}`).join(' ');
    const dash = s.dashed ? ' stroke-dasharray="6 4"' : '';
    parts.push(`<polyline points="${points}" fill="none" stroke="${s.color}" stroke-width="2.5"${dash}/>`);
    for (const [i, v] of s.values.entries()) parts.push(`<circle cx="${x(i)}" cy="${y(v)}" r="3.5" fill="${s.color}"><title>${escape(`${s.label} at ${runs[i]!.rate}/s: ${v} ms`)}</title></circle>`);
    const ly = M.top + 14 + k * 20;
    parts.push(
      `<line x1="${W - M.right + 16}" x2="${W - M.right + 44}" y1="${ly - 4}" y2="${ly - 4}" stroke="${s.color}" stroke-width="2.5"${dash}/>`,
      `<text x="${W - M.right + 50}" y="${ly}">${escape(s.label)}</text>`,
    );
  });
  parts.push('</svg>', '');
  return parts.join('\n');
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const [input, output] = process.argv.slice(2);
  if (!input || !output) throw new Error('usage: plot.js RESULTS.json OUT.svg');
  const results = JSON.parse(readFileSync(input, 'utf8')) as { machine?: { cpus: number }; live?: { seconds: number; runs: Array<{ rate: number; floor: LiveRun; worker: LiveRun }> } };
  if (results.live === undefined) throw new Error(`${input} has no live runs`);
  writeFileSync(output, latencyPlot(results.live.runs, `Live latency, ${results.live.seconds} s per rate, ${results.machine?.cpus ?? '?'} CPUs`));
}
