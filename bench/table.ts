/**
 * Prints bench/results/latest.json (or the file given) as the markdown table docs/BENCHMARKS.md shows:
 *   npx tsx bench/table.ts [results.json]
 */
import { readFileSync } from 'node:fs';

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
const rows = JSON.parse(readFileSync(file, 'utf8')) as Row[];

function num(v: number | null, unit?: string): string {
  if (v === null || v === undefined) return '-';
  const digits = unit === 'MB/s' ? 1 : 0;
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
