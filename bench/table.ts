/**
 * Prints a bench run as the markdown tables docs/BENCHMARKS.md shows:
 *
 *   npx tsx bench/table.ts [results.json [sidecar-http.json]]
 *
 * defaults: bench/results/latest.json (every row with its anchors, ratio, target, met) and
 * bench/results/latest-sidecar-http.json (one row per HTTP path: req/s, p50/p99, CPU µs per request per proxy),
 * both written by the same `npm run bench`.
 */
import { existsSync, readFileSync } from 'node:fs';
import { httpTableMarkdown } from './http-table.js';
import type { SidecarHttpResults } from './sidecar-http.js';

interface Row {
  name: string;
  unit: string;
  value: number;
  anchor: string | null;
  anchorValue: number | null;
  ratio: number | null;
  target: string | null;
  met: boolean | null;
}

const file = process.argv[2] ?? new URL('./results/latest.json', import.meta.url).pathname;
const httpFile = process.argv[3] ?? new URL('./results/latest-sidecar-http.json', import.meta.url).pathname;
const rows = JSON.parse(readFileSync(file, 'utf8')) as Row[];

function num(v: number | null, unit?: string): string {
  if (v === null || v === undefined) return '-';
  const digits = unit === 'MB/s' || unit === 'MB' ? 1 : 0;
  return v.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

const lines = [
  '| benchmark | value | unit | anchor | anchor value | ratio | target | met |',
  '| --- | ---: | --- | --- | ---: | ---: | --- | --- |',
];
for (const r of rows) {
  const met = r.met === null || r.met === undefined ? '-' : r.met ? 'yes' : '**no**';
  const ratio = r.ratio === null || r.ratio === undefined ? '-' : `${r.ratio.toFixed(2)}x`;
  lines.push(
    `| ${r.name} | ${num(r.value, r.unit)} | ${r.unit} | ${r.anchor ?? '-'} | ${num(r.anchorValue, r.unit)} | ${ratio} | ${r.target ?? '-'} | ${met} |`,
  );
}
console.log(lines.join('\n'));
if (existsSync(httpFile)) {
  const http = JSON.parse(readFileSync(httpFile, 'utf8')) as SidecarHttpResults;
  console.log('');
  console.log(httpTableMarkdown(http));
}
