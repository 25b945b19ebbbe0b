/**
 * The table of the HTTP paths (issue 14): one row per path of bench/sidecar-http.ts, from its results
 * (bench/results/latest-sidecar-http.json). bench/run.ts prints it, bench/table.ts renders it as markdown.
 */
import {
  type HttpResult,
  PATH_LABELS,
  PATH_PROXIES,
  PATHS,
  pathCpuPct,
  type SidecarHttpResults,
} from './sidecar-http.js';

export const HTTP_HEADER = [
  'path (HTTP GET 100 B)',
  'req/s, 64 conn',
  'req/s, 1 conn',
  'p50 / p99 µs, 1 conn',
  'p50 / p99 µs, 64 conn',
  'p50 added over direct, 1 conn',
  'CPU µs/request per proxy, 64 conn',
  'CPU µs/request per proxy, 1 conn',
  'all processes CPU, 64 conn (% of cores)',
  'whole machine CPU, 64 conn (% of cores)',
  'of which softirq / machine idle, 64 conn (% of cores)',
];

function n(v: number | null | undefined, digits = 0): string {
  if (v === null || v === undefined || Number.isNaN(v)) return '-';
  return v.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });
}

/** "30 / 32" (one value per proxy process, in the order a request crosses them), or "-". */
function perProxy(r: HttpResult | undefined, proxies: string[]): string {
  if (!r || proxies.length === 0) return '-';
  return proxies.map((p) => n(r.cpuUsPerReq[p], 0)).join(' / ');
}

/** The rows of the table (cells as strings), paths without any measurement left out. */
export function httpTableRows(http: SidecarHttpResults, high = 64): string[][] {
  const rows: string[][] = [];
  const direct1 = http.results.direct?.[1]?.p50Us ?? null;
  for (const path of PATHS) {
    const byConc = http.results[path];
    if (!byConc) continue;
    const hi = byConc[high];
    const one = byConc[1];
    if (hi?.perSec == null && one?.perSec == null) continue;
    const added = path === 'direct' || one?.p50Us == null || direct1 === null ? null : one.p50Us - direct1;
    const total = hi ? pathCpuPct(hi, http.setup.cores) : null;
    rows.push([
      PATH_LABELS[path],
      n(hi?.perSec),
      n(one?.perSec),
      `${n(one?.p50Us)} / ${n(one?.p99Us)}`,
      `${n(hi?.p50Us)} / ${n(hi?.p99Us)}`,
      added === null ? '-' : `${added >= 0 ? '+' : ''}${n(added)}`,
      perProxy(hi, PATH_PROXIES[path]),
      perProxy(one, PATH_PROXIES[path]),
      n(total),
      n(hi?.machineCpuPct),
      hi?.machine ? `${n(hi.machine.softirq, 1)} / ${n(hi.machine.idle, 1)}` : '-',
    ]);
  }
  return rows;
}

/** The same table as markdown. */
export function httpTableMarkdown(http: SidecarHttpResults, high = 64): string {
  const lines = [
    `| ${HTTP_HEADER.join(' | ')} |`,
    `| --- | ${HTTP_HEADER.slice(1)
      .map(() => '---:')
      .join(' | ')} |`,
  ];
  for (const row of httpTableRows(http, high)) lines.push(`| ${row.join(' | ')} |`);
  return lines.join('\n');
}

/** The same table in fixed-width columns, for the terminal. */
export function httpTableText(http: SidecarHttpResults, high = 64): string {
  const rows = httpTableRows(http, high);
  const widths = HTTP_HEADER.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) =>
    cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!)));
  return [
    line(HTTP_HEADER).join(' | '),
    widths.map((w) => '-'.repeat(w)).join('-|-'),
    ...rows.map((r) => line(r).join(' | ')),
  ].join('\n');
}
