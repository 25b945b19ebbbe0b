/**
 * The benchmark suite: `npm run bench` (3 s per row after a 1 s warm-up) or `npm run bench -- --quick` (1 s after
 * 0.3 s). Every anchor is measured in the same run, each case in a fresh process (bench/worker.ts,
 * bench/memory.ts, the Go program test/interop/geminio-bench). Prints a table and writes
 * bench/results/latest.json: rows {name, unit, value, anchor, anchorValue, ratio, target, met, note}.
 * The sidecar rows (bench/sidecar-http.ts) run the app, the two sidecars, nginx and the load generator each in
 * its own process. Targets are reported, never asserted. See docs/BENCHMARKS.md.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { benchDir, buildGoBench, JsonChild, type Measured, runGo, type Timing, tsxArgs } from './lib.js';
import { cpuNote, type HttpResult, runSidecarHttp } from './sidecar-http.js';

const quick = process.argv.includes('--quick');
const timing: Timing = quick ? { warmupMs: 300, durationMs: 1_000 } : { warmupMs: 1_000, durationMs: 3_000 };
const goStall = quick ? '1s' : '2s';

export interface Row {
  name: string;
  unit: string;
  value: number | null;
  anchor: string | null;
  anchorValue: number | null;
  ratio: number | null;
  target: string | null;
  met: boolean | null;
  note?: string;
}

type Target = { kind: 'ratio-min'; k: number } | { kind: 'min'; v: number } | { kind: 'max'; v: number };

interface Result {
  value: number | null;
  note?: string;
}

function describe(t: Target | undefined, unit: string): string | null {
  if (!t) return null;
  if (t.kind === 'ratio-min') return `>= ${t.k}x anchor`;
  if (t.kind === 'min') return `>= ${t.v.toLocaleString('en-US')} ${unit}`;
  return `<= ${t.v.toLocaleString('en-US')} ${unit}`;
}

function judge(t: Target | undefined, value: number | null, ratio: number | null): boolean | null {
  if (!t || value === null) return null;
  if (t.kind === 'ratio-min') return ratio === null ? null : ratio >= t.k;
  if (t.kind === 'min') return value >= t.v;
  return value <= t.v;
}

const rows: Row[] = [];

function addRow(
  name: string,
  unit: string,
  node: Result,
  anchors: Array<{ anchor: string; result: Result; target?: Target }>,
  target?: Target,
): void {
  const list = anchors.length > 0 ? anchors : [{ anchor: null, result: { value: null }, target: undefined }];
  for (const a of list) {
    const anchorValue = a.anchor === null ? null : a.result.value;
    const ratio =
      node.value !== null && anchorValue !== null && anchorValue > 0 ? node.value / anchorValue : null;
    const t = a.target ?? target;
    const notes = [node.note, a.anchor !== null ? a.result.note : undefined].filter(Boolean);
    rows.push({
      name,
      unit,
      value: node.value,
      anchor: a.anchor,
      anchorValue,
      ratio,
      target: describe(t, unit),
      met: judge(t, node.value, ratio),
      ...(notes.length > 0 ? { note: notes.join('; ') } : {}),
    });
  }
}

function log(msg: string): void {
  process.stderr.write(`${msg}\n`);
}

async function node(name: string, opts: Record<string, unknown>, field = 'perSec'): Promise<Result> {
  const label = `${name} ${JSON.stringify(opts)}`;
  log(`  node  ${label}`);
  const child = new JsonChild(process.execPath, [
    ...tsxArgs('worker.ts'),
    name,
    JSON.stringify({ ...opts, ...timing }),
  ]);
  try {
    const r = (await child.next(120_000)) as Measured & { error?: string };
    if (r.error) throw new Error(r.error);
    const value = Number(r[field]);
    const note = r.stalled ? `stalled: no progress for 3 s, rate until the last progress` : undefined;
    return { value, ...(note ? { note } : {}) };
  } catch (err) {
    log(`    FAILED: ${(err as Error).message.split('\n')[0]}`);
    return { value: null, note: `failed: ${(err as Error).message.split('\n')[0]}` };
  } finally {
    await child.stop();
  }
}

let goOk = true;
async function go(args: string[], field = 'opsPerSec'): Promise<Result> {
  if (!goOk) return { value: null, note: 'Go anchor unavailable (go build failed)' };
  log(`  go    ${args.join(' ')}`);
  try {
    const r = await runGo([
      ...args,
      '-warmup',
      `${timing.warmupMs}ms`,
      '-duration',
      `${timing.durationMs}ms`,
      '-stall',
      goStall,
    ]);
    const value = Number(r[field]);
    const lost =
      typeof r.notReceived === 'number' && r.notReceived > 0
        ? `Go wrote ${(r.writtenTotal / 1e6).toFixed(0)} MB, its reader got ${(r.total / 1e6).toFixed(0)} MB ` +
          `(${(r.notReceived / 1e6).toFixed(1)} MB dropped by the receiver or still in flight)`
        : undefined;
    if (r.stalled) {
      const where = r.stalledDuringWarmup ? 'during the warm-up' : 'inside the measured window';
      return {
        value,
        note:
          `Go stalled ${where}, ${Number(r.stallAt).toFixed(2)} s after the start (no progress for ${goStall}; ` +
          `${r.total} ops/bytes in total); value is the rate until the last progress` +
          (lost ? `; ${lost}` : ''),
      };
    }
    return lost ? { value, note: lost } : { value };
  } catch (err) {
    log(`    FAILED: ${(err as Error).message.split('\n')[0]}`);
    return { value: null, note: `Go anchor failed: ${(err as Error).message.split('\n')[0]}` };
  }
}

async function memory(): Promise<{
  connection: { client: { heap: number; rss: number }; server: { heap: number; rss: number } };
  stream: { opener: { heap: number; rss: number }; acceptor: { heap: number; rss: number } };
} | null> {
  log('  node  memory (N=200 connections, N=1000 streams, --expose-gc)');
  const child = new JsonChild(process.execPath, [
    ...tsxArgs('memory.ts', ['--expose-gc']),
    JSON.stringify({ connections: 200, streams: 1000 }),
  ]);
  try {
    return await child.next(120_000);
  } catch (err) {
    log(`    FAILED: ${(err as Error).message.split('\n')[0]}`);
    return null;
  } finally {
    await child.stop();
  }
}

const GO = 'Go geminio v1.1.8 (Go client + Go server, one process)';
const GRPC = '@grpc/grpc-js unary, 1 connection (2 processes)';
const RAW = 'raw TCP, 2 Node sockets, 1 process';
const YAMUX = '@chainsafe/libp2p-yamux over TCP, 1 process';

const started = performance.now();
log(
  `geminio-node benchmarks (${quick ? 'quick' : 'full'}: ${timing.warmupMs} ms warm-up + ${timing.durationMs} ms per row)`,
);
try {
  log('building test/interop/geminio-bench ...');
  await buildGoBench();
} catch (err) {
  goOk = false;
  log(`Go anchors skipped: ${(err as Error).message.split('\n')[0]}`);
}

// RPC
{
  const n1 = await node('rpc', { inflight: 1 });
  const g1 = await go(['-mode', 'rpc', '-inflight', '1']);
  const r1 = await node('grpc', { inflight: 1 });
  addRow('RPC 256 B -> 4 KiB, sequential (2 processes)', 'calls/s', n1, [
    { anchor: GO, result: g1, target: { kind: 'ratio-min', k: 2 } },
    { anchor: GRPC, result: r1, target: { kind: 'ratio-min', k: 2 } },
  ]);
  const n64 = await node('rpc', { inflight: 64 });
  const g64 = await go(['-mode', 'rpc', '-inflight', '64']);
  const r64 = await node('grpc', { inflight: 64 });
  addRow(
    'RPC 256 B -> 4 KiB, 64 in flight (2 processes)',
    'calls/s',
    n64,
    [
      { anchor: GO, result: g64 },
      { anchor: GRPC, result: r64 },
    ],
    { kind: 'min', v: 100_000 },
  );
  const i1 = await node('rpc', { inflight: 1, server: 'inproc' });
  addRow('RPC 256 B -> 4 KiB, sequential (both Ends in 1 process)', 'calls/s', i1, [
    { anchor: GO, result: g1 },
  ]);
  const i64 = await node('rpc', { inflight: 64, server: 'inproc' });
  addRow('RPC 256 B -> 4 KiB, 64 in flight (both Ends in 1 process)', 'calls/s', i64, [
    { anchor: GO, result: g64 },
  ]);
}

// Publish
{
  const n1 = await node('publish', { inflight: 1 });
  const g1 = await go(['-mode', 'publish', '-inflight', '1']);
  addRow('Acked publish 5 B, sequential (2 processes)', 'msgs/s', n1, [
    { anchor: GO, result: g1, target: { kind: 'ratio-min', k: 2 } },
  ]);
  const n256 = await node('publish', { inflight: 256 });
  const g256 = await go(['-mode', 'publish', '-inflight', '256']);
  addRow('Acked publish 5 B, 256 in flight (2 processes)', 'msgs/s', n256, [{ anchor: GO, result: g256 }]);
}

// Stream throughput
for (const streams of [1, 16]) {
  const n = await node('stream', { streams, transport: 'geminio' }, 'mbPerSec');
  const raw = await node('stream', { streams: 1, transport: 'tcp' }, 'mbPerSec');
  const y = await node('stream', { streams, transport: 'yamux' }, 'mbPerSec');
  const g = await go(['-mode', 'stream', '-streams', String(streams)], 'mbPerSec');
  const one = streams === 1;
  addRow(`Stream throughput, 128 KiB writes, ${streams} stream${one ? '' : 's'} (1 process)`, 'MB/s', n, [
    { anchor: RAW, result: raw, ...(one ? { target: { kind: 'ratio-min', k: 0.8 } as Target } : {}) },
    { anchor: YAMUX, result: y, ...(one ? { target: { kind: 'ratio-min', k: 1.5 } as Target } : {}) },
    { anchor: GO, result: g },
  ]);
}

// Stream open + close
{
  const s1 = await node('openclose', { inflight: 1 });
  addRow('Stream open + 1 B + close, sequential (2 processes)', 'streams/s', s1, [], {
    kind: 'min',
    v: 20_000,
  });
  const s64 = await node('openclose', { inflight: 64 });
  addRow('Stream open + 1 B + close, 64 in flight (2 processes)', 'streams/s', s64, [], {
    kind: 'min',
    v: 20_000,
  });
}

// Node client -> Go server
{
  const n1 = await node('rpc', { inflight: 1, server: 'go' });
  const nn1 = await node('rpc', { inflight: 1 });
  const g1 = await go(['-mode', 'rpc', '-inflight', '1']);
  addRow('RPC 256 B -> 4 KiB, Node client -> Go server, sequential', 'calls/s', n1, [
    { anchor: 'Node client -> Node server (2 processes)', result: nn1 },
    { anchor: GO, result: g1 },
  ]);
  const n64 = await node('rpc', { inflight: 64, server: 'go' });
  const nn64 = await node('rpc', { inflight: 64 });
  addRow('RPC 256 B -> 4 KiB, Node client -> Go server, 64 in flight', 'calls/s', n64, [
    { anchor: 'Node client -> Node server (2 processes)', result: nn64 },
  ]);
}

// Sidecar: HTTP GET through outbound + inbound sidecar, against direct and one nginx hop (issue 6)
{
  const HIGH = 64;
  const http = await runSidecarHttp(timing, { concurrencies: [1, HIGH], log });
  const res = http.results;
  const DIRECT = 'direct: client -> app (2 processes)';
  const NGINX = 'one nginx hop: client -> nginx -> app (3 processes)';
  const via = 'client -> outbound sidecar -> geminio -> inbound sidecar -> app (4 processes)';
  const pick = (r: HttpResult, field: 'perSec' | 'p50Us' | 'p99Us', withCpu = false): Result => {
    const notes = [r.note, withCpu ? cpuNote(r) : undefined];
    if (withCpu && r.streamsOpened !== undefined) notes.push(`${r.streamsOpened} geminio streams opened`);
    const note = notes.filter(Boolean).join('; ');
    return { value: r[field], ...(note ? { note } : {}) };
  };
  for (const c of [HIGH, 1]) {
    const conns = `${c} connection${c === 1 ? '' : 's'}`;
    addRow(`HTTP GET 100 B, ${conns}: ${via}`, 'req/s', pick(res.sidecar[c]!, 'perSec', true), [
      {
        anchor: DIRECT,
        result: pick(res.direct[c]!, 'perSec', true),
        ...(c === HIGH ? { target: { kind: 'ratio-min', k: 0.6 } as Target } : {}),
      },
      { anchor: NGINX, result: pick(res.nginx[c]!, 'perSec', true) },
    ]);
  }
  for (const c of [1, HIGH]) {
    const conns = `${c} connection${c === 1 ? '' : 's'}`;
    for (const [field, label] of [
      ['p50Us', 'p50'],
      ['p99Us', 'p99'],
    ] as const) {
      addRow(`HTTP GET 100 B ${label} latency, ${conns}: two sidecars`, 'µs', pick(res.sidecar[c]!, field), [
        { anchor: DIRECT, result: pick(res.direct[c]!, field) },
        { anchor: NGINX, result: pick(res.nginx[c]!, field) },
      ]);
    }
  }
  // The latency target: p50 added by the two sidecars over direct, at 1 connection; nginx's added p50 as anchor.
  const added = (r: HttpResult): Result => {
    const d = res.direct[1]!.p50Us;
    return {
      value: r.p50Us !== null && d !== null ? r.p50Us - d : null,
      ...(r.note ? { note: r.note } : {}),
    };
  };
  addRow(
    'HTTP GET 100 B p50 added over direct, 1 connection: two sidecars',
    'µs',
    added(res.sidecar[1]!),
    [{ anchor: 'one nginx hop, p50 added over direct', result: added(res.nginx[1]!) }],
    { kind: 'max', v: 250 },
  );
  writeFileSync(
    join(benchDir, 'results', `latest-sidecar-http-${quick ? 'quick' : 'full'}.json`),
    `${JSON.stringify(http, null, 2)}\n`,
  );
}

// Memory
{
  const m = await memory();
  const v = (x: number | undefined): Result => ({ value: x === undefined ? null : Math.round(x) });
  const max4k: Target = { kind: 'max', v: 4096 };
  addRow('Heap per idle open stream, opener side (N=1000)', 'bytes', v(m?.stream.opener.heap), [], max4k);
  addRow('Heap per idle open stream, acceptor side (N=1000)', 'bytes', v(m?.stream.acceptor.heap), [], max4k);
  addRow('RSS per idle open stream, opener side (N=1000)', 'bytes', v(m?.stream.opener.rss), []);
  addRow('RSS per idle open stream, acceptor side (N=1000)', 'bytes', v(m?.stream.acceptor.rss), []);
  addRow('Heap per idle connection, client side (N=200)', 'bytes', v(m?.connection.client.heap), []);
  addRow('Heap per idle connection, server side (N=200)', 'bytes', v(m?.connection.server.heap), []);
  addRow('RSS per idle connection, client side (N=200)', 'bytes', v(m?.connection.client.rss), []);
  addRow('RSS per idle connection, server side (N=200)', 'bytes', v(m?.connection.server.rss), []);
}

// Output
function fmt(x: number | null, digits = 0): string {
  if (x === null || Number.isNaN(x)) return '-';
  return x.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });
}

const header = ['benchmark', 'value', 'unit', 'anchor', 'anchor value', 'ratio', 'target', 'met'];
const table = rows.map((r) => [
  r.name,
  fmt(r.value, r.unit === 'MB/s' ? 1 : 0),
  r.unit,
  r.anchor ?? '-',
  fmt(r.anchorValue, r.unit === 'MB/s' ? 1 : 0),
  r.ratio === null ? '-' : `${r.ratio.toFixed(2)}x`,
  r.target ?? '-',
  r.met === null ? '-' : r.met ? 'yes' : 'NO',
]);
const widths = header.map((h, i) => Math.max(h.length, ...table.map((row) => row[i]!.length)));
const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i]!)).join(' | ');
console.log(line(header));
console.log(widths.map((w) => '-'.repeat(w)).join('-|-'));
for (const row of table) console.log(line(row));
const notes = rows.filter((r) => r.note);
if (notes.length > 0) {
  console.log('\nnotes:');
  for (const r of notes) console.log(`  ${r.name} / ${r.anchor ?? '-'}: ${r.note}`);
}

const outDir = join(benchDir, 'results');
mkdirSync(outDir, { recursive: true });
writeFileSync(join(outDir, 'latest.json'), `${JSON.stringify(rows, null, 2)}\n`);
// A copy per mode, so a quick run does not hide the last full one.
writeFileSync(
  join(outDir, quick ? 'latest-quick.json' : 'latest-full.json'),
  `${JSON.stringify(rows, null, 2)}\n`,
);
const secs = (performance.now() - started) / 1000;
log(
  `\nwrote bench/results/latest.json (${rows.length} rows) in ${secs.toFixed(1)} s; ` +
    `node ${process.version}, ${cpus().length} CPUs (${cpus()[0]?.model ?? '?'})`,
);
process.exit(0);
