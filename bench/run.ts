/**
 * The benchmark suite: `npm run bench` (3 s per row after a 1 s warm-up) or `npm run bench -- --quick` (1 s after
 * 0.3 s). Every anchor is measured in the same run, each case in a fresh process (bench/worker.ts,
 * bench/memory.ts, the Go program test/interop/geminio-bench). Prints a table and writes
 * bench/results/latest.json: rows {name, unit, value, anchor, anchorValue, ratio, target, met, note}.
 * The sidecar rows (bench/sidecar-http.ts) run the app, the two sidecars, the Node proxies, nginx and the load
 * generator each in its own process; their per-path table is printed too and written to
 * bench/results/latest-sidecar-http.json (bench/table.ts renders both as markdown). Options:
 *   --http-warmup MS   warm-up before each HTTP window, the same for every path (full: 3000, quick: 1000; a
 *                      Node proxy measured after 300 ms of load still runs cold code, several times its warm cost)
 *   --rss-settle MS    how long after the sidecars' last load their RSS is read again (full: 60000, quick: 0)
 *   --rss-idle MS      how long after the sidecars are ready their idle RSS is read (full: 10000, quick: 1000)
 * Targets are reported, never asserted. See docs/BENCHMARKS.md.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { runGrpcBench } from './grpc.js';
import { httpTableText } from './http-table.js';
import { runIperf3 } from './iperf.js';
import {
  benchDir,
  buildGoBench,
  goBenchBinary,
  JsonChild,
  type Measured,
  REQUEST_SIZE,
  RESPONSE_SIZE,
  runGo,
  type Timing,
  tsxArgs,
} from './lib.js';
import {
  cpuNote,
  type HttpResult,
  PATH_LABELS,
  PATH_PROXIES,
  type PathName,
  pathCpuPct,
  runSidecarHttp,
} from './sidecar-http.js';

const quick = process.argv.includes('--quick');
const timing: Timing = quick ? { warmupMs: 300, durationMs: 1_000 } : { warmupMs: 1_000, durationMs: 3_000 };
const goStall = quick ? '1s' : '2s';
function numberFlag(flag: string, fallback: number): number {
  const i = process.argv.indexOf(flag);
  if (i < 0) return fallback;
  const v = Number(process.argv[i + 1]);
  if (!Number.isFinite(v) || v < 0) {
    console.error(`${flag} needs a number of milliseconds`);
    process.exit(2);
  }
  return v;
}
const HTTP_WARMUP_MS = { full: 3_000, quick: 1_000 };
const httpTiming: Timing = {
  ...timing,
  warmupMs: numberFlag('--http-warmup', quick ? HTTP_WARMUP_MS.quick : HTTP_WARMUP_MS.full),
};
const rssSettleMs = numberFlag('--rss-settle', quick ? 0 : 60_000);
const rssIdleMs = numberFlag('--rss-idle', quick ? 1_000 : 10_000);

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

type Target =
  | { kind: 'ratio-min'; k: number }
  | { kind: 'ratio-max'; k: number }
  | { kind: 'min'; v: number }
  | { kind: 'max'; v: number };

interface Result {
  value: number | null;
  note?: string;
}

function describe(t: Target | undefined, unit: string): string | null {
  if (!t) return null;
  if (t.kind === 'ratio-min') return `>= ${t.k}x anchor`;
  if (t.kind === 'ratio-max') return `<= ${t.k}x anchor`;
  if (t.kind === 'min') return `>= ${t.v.toLocaleString('en-US')} ${unit}`;
  return `<= ${t.v.toLocaleString('en-US')} ${unit}`;
}

function judge(t: Target | undefined, value: number | null, ratio: number | null): boolean | null {
  if (!t || value === null) return null;
  if (t.kind === 'ratio-min') return ratio === null ? null : ratio >= t.k;
  if (t.kind === 'ratio-max') return ratio === null ? null : ratio <= t.k;
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
  for (const [i, a] of list.entries()) {
    const anchorValue = a.anchor === null ? null : a.result.value;
    const ratio =
      node.value !== null && anchorValue !== null && anchorValue > 0 ? node.value / anchorValue : null;
    const t = a.target ?? target;
    // The benchmark's own note once (on its first row), each anchor's on its row.
    const notes = [i === 0 ? node.note : undefined, a.anchor !== null ? a.result.note : undefined].filter(
      Boolean,
    );
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

/** The Go pair in two processes: a `-mode server` process (or `serverArgs`), and the Go client dialing it (`-addr`). */
async function go2(args: string[], field = 'opsPerSec', serverArgs = ['-mode', 'server']): Promise<Result> {
  if (!goOk) return { value: null, note: 'Go anchor unavailable (go build failed)' };
  const server = new JsonChild(goBenchBinary, serverArgs);
  try {
    const ready = await server.next(30_000);
    if (ready.event !== 'listening') throw new Error(`Go server: ${JSON.stringify(ready)}`);
    return await go([...args, '-addr', String(ready.addr)], field);
  } catch (err) {
    log(`    FAILED: ${(err as Error).message.split('\n')[0]}`);
    return { value: null, note: `Go anchor failed: ${(err as Error).message.split('\n')[0]}` };
  } finally {
    await server.stop();
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
const GO2 = 'Go geminio v1.1.8 (Go client -> Go server, 2 processes)';
const GRPC = '@grpc/grpc-js unary, 1 connection (2 processes)';
const RAW = 'raw TCP, 2 Node sockets, 1 process';
const YAMUX = '@chainsafe/libp2p-yamux over TCP, 1 process';
const IPERF = 'iperf3 -l 128K on loopback (2 processes): the physical limit';
const NODE_PP = 'raw TCP ping-pong, 2 Node processes (the same payloads, no protocol)';
const GO_PP = 'raw TCP ping-pong, 2 Go processes (the same payloads, no protocol)';

/** The floor of a sequential two-process row: a write of `request` bytes answered by `response`, no protocol. */
async function pingPong(request: number, response: number): Promise<{ node: Result; go: Result }> {
  const sizes = ['-request', String(request), '-response', String(response)];
  return {
    node: await node('pingpong', { request, response }),
    go: await go2(['-mode', 'tcp-pingpong', ...sizes], 'opsPerSec', ['-mode', 'tcp-server', ...sizes]),
  };
}

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

// RPC: every Node row beside the Go pair of the same shape (2 processes, or both Ends in 1 process).
{
  const n1 = await node('rpc', { inflight: 1 });
  const gg1 = await go2(['-mode', 'rpc', '-inflight', '1']);
  const r1 = await node('grpc', { inflight: 1 });
  const pp = await pingPong(REQUEST_SIZE, RESPONSE_SIZE);
  addRow('RPC 256 B -> 4 KiB, sequential (2 processes)', 'calls/s', n1, [
    { anchor: GO2, result: gg1, target: { kind: 'ratio-min', k: 2 } },
    { anchor: GRPC, result: r1, target: { kind: 'ratio-min', k: 2 } },
    { anchor: NODE_PP, result: pp.node },
    { anchor: GO_PP, result: pp.go },
  ]);
  const n64 = await node('rpc', { inflight: 64 });
  const gg64 = await go2(['-mode', 'rpc', '-inflight', '64']);
  const r64 = await node('grpc', { inflight: 64 });
  addRow(
    'RPC 256 B -> 4 KiB, 64 in flight (2 processes)',
    'calls/s',
    n64,
    [
      { anchor: GO2, result: gg64 },
      { anchor: GRPC, result: r64 },
    ],
    { kind: 'min', v: 100_000 },
  );
  const i1 = await node('rpc', { inflight: 1, server: 'inproc' });
  const g1 = await go(['-mode', 'rpc', '-inflight', '1']);
  addRow('RPC 256 B -> 4 KiB, sequential (both Ends in 1 process)', 'calls/s', i1, [
    { anchor: GO, result: g1 },
  ]);
  const i64 = await node('rpc', { inflight: 64, server: 'inproc' });
  const g64 = await go(['-mode', 'rpc', '-inflight', '64']);
  addRow('RPC 256 B -> 4 KiB, 64 in flight (both Ends in 1 process)', 'calls/s', i64, [
    { anchor: GO, result: g64 },
  ]);
}

// Publish: the same two shapes.
{
  const n1 = await node('publish', { inflight: 1 });
  const gg1 = await go2(['-mode', 'publish', '-inflight', '1']);
  const pp = await pingPong(5, 5);
  addRow('Acked publish 5 B, sequential (2 processes)', 'msgs/s', n1, [
    { anchor: GO2, result: gg1, target: { kind: 'ratio-min', k: 2 } },
    { anchor: NODE_PP, result: pp.node },
    { anchor: GO_PP, result: pp.go },
  ]);
  const n256 = await node('publish', { inflight: 256 });
  const gg256 = await go2(['-mode', 'publish', '-inflight', '256']);
  addRow('Acked publish 5 B, 256 in flight (2 processes)', 'msgs/s', n256, [{ anchor: GO2, result: gg256 }]);
  const i1 = await node('publish', { inflight: 1, server: 'inproc' });
  const g1 = await go(['-mode', 'publish', '-inflight', '1']);
  addRow('Acked publish 5 B, sequential (both Ends in 1 process)', 'msgs/s', i1, [
    { anchor: GO, result: g1 },
  ]);
  const i256 = await node('publish', { inflight: 256, server: 'inproc' });
  const g256 = await go(['-mode', 'publish', '-inflight', '256']);
  addRow('Acked publish 5 B, 256 in flight (both Ends in 1 process)', 'msgs/s', i256, [
    { anchor: GO, result: g256 },
  ]);
}

// Stream throughput
for (const streams of [1, 16]) {
  const n = await node('stream', { streams, transport: 'geminio' }, 'mbPerSec');
  const raw = await node('stream', { streams: 1, transport: 'tcp' }, 'mbPerSec');
  const y = await node('stream', { streams, transport: 'yamux' }, 'mbPerSec');
  const g = await go(['-mode', 'stream', '-streams', String(streams)], 'mbPerSec');
  const ip = await runIperf3(streams, timing, log);
  const one = streams === 1;
  addRow(`Stream throughput, 128 KiB writes, ${streams} stream${one ? '' : 's'} (1 process)`, 'MB/s', n, [
    { anchor: RAW, result: raw, ...(one ? { target: { kind: 'ratio-min', k: 0.8 } as Target } : {}) },
    { anchor: YAMUX, result: y, ...(one ? { target: { kind: 'ratio-min', k: 1.5 } as Target } : {}) },
    { anchor: GO, result: g },
    { anchor: `${IPERF}, ${streams} TCP stream${one ? '' : 's'}`, result: ip },
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
  const gg1 = await go2(['-mode', 'rpc', '-inflight', '1']);
  addRow('RPC 256 B -> 4 KiB, Node client -> Go server, sequential', 'calls/s', n1, [
    { anchor: 'Node client -> Node server (2 processes)', result: nn1 },
    { anchor: GO2, result: gg1 },
  ]);
  const n64 = await node('rpc', { inflight: 64, server: 'go' });
  const nn64 = await node('rpc', { inflight: 64 });
  const gg64 = await go2(['-mode', 'rpc', '-inflight', '64']);
  addRow('RPC 256 B -> 4 KiB, Node client -> Go server, 64 in flight', 'calls/s', n64, [
    { anchor: 'Node client -> Node server (2 processes)', result: nn64 },
    { anchor: GO2, result: gg64 },
  ]);
}

// Sidecar: HTTP GET through outbound + inbound sidecar, against direct, nginx and the Node proxies, one and two
// hops (issues 6 and 14). The per-path table is printed below; these rows are the targets, as ratios.
let httpTable: string | undefined;
{
  const HIGH = 64;
  const http = await runSidecarHttp(httpTiming, { concurrencies: [1, HIGH], log, rssSettleMs, rssIdleMs });
  const res = http.results;
  const cores = http.setup.cores;
  const SIDECARS = 'two sidecars: client -> outbound -> geminio -> inbound -> app (4 processes)';
  const label = (p: PathName) => `${PATH_LABELS[p]}${p === 'direct' ? ' (2 processes)' : ''}`;
  const noteOf = (r: HttpResult, withCpu: boolean): string | undefined => {
    const notes = [r.note, withCpu ? cpuNote(r) : undefined];
    if (withCpu && r.streamsOpened !== undefined) notes.push(`${r.streamsOpened} geminio streams opened`);
    return notes.filter(Boolean).join('; ') || undefined;
  };
  const pick = (r: HttpResult, field: 'perSec' | 'p50Us' | 'p99Us', withCpu = false): Result => {
    const note = noteOf(r, withCpu);
    return { value: r[field], ...(note ? { note } : {}) };
  };
  const at = (p: PathName, c: number): HttpResult => res[p][c]!;

  // req/s at 64 connections: ahead of the minimal Node proxy's two hops, and so of http-proxy and fastify.
  addRow(
    `HTTP GET 100 B req/s, ${HIGH} connections: ${SIDECARS}`,
    'req/s',
    pick(at('sidecar', HIGH), 'perSec', true),
    [
      {
        anchor: label('direct'),
        result: pick(at('direct', HIGH), 'perSec'),
        target: { kind: 'ratio-min', k: 0.6 },
      },
      {
        anchor: label('minimal2'),
        result: pick(at('minimal2', HIGH), 'perSec', true),
        target: { kind: 'ratio-min', k: 1 },
      },
      {
        anchor: label('http-proxy2'),
        result: pick(at('http-proxy2', HIGH), 'perSec'),
        target: { kind: 'ratio-min', k: 1 },
      },
      {
        anchor: label('fastify2'),
        result: pick(at('fastify2', HIGH), 'perSec'),
        target: { kind: 'ratio-min', k: 1 },
      },
      { anchor: label('nginx2'), result: pick(at('nginx2', HIGH), 'perSec') },
    ],
  );

  // Issue 15: the same two-sidecar path with the upstream balanced over three inbound sidecars (each its own
  // process, on 127.0.0.1-3), against one endpoint in the same run. On a 2-core machine the three inbound processes
  // compete for the same cores, so this shows the balancing's cost more than any gain.
  addRow(
    `HTTP GET 100 B req/s, ${HIGH} connections: outbound sidecar over three inbound sidecars (6 processes)`,
    'req/s',
    pick(at('sidecar3', HIGH), 'perSec', true),
    [{ anchor: `${label('sidecar')}, one endpoint`, result: pick(at('sidecar', HIGH), 'perSec', true) }],
  );

  // CPU µs per request of each sidecar at 64 connections, against one proxy of the minimal two-hop chain (the mean
  // of its two processes) and the minimal proxy as one hop.
  const perProxy = (p: PathName, c: number): Result => {
    const r = at(p, c);
    const vals = PATH_PROXIES[p]
      .map((k) => r.cpuUsPerReq[k])
      .filter((v): v is number => typeof v === 'number');
    return vals.length === 0
      ? { value: null, note: r.note ?? 'no CPU sample' }
      : { value: vals.reduce((a, b) => a + b, 0) / vals.length };
  };
  for (const side of ['outbound', 'inbound'] as const) {
    const r = at('sidecar', HIGH);
    const v = r.cpuUsPerReq[side];
    addRow(
      `CPU µs per request, ${side} sidecar, ${HIGH} connections`,
      'µs',
      v === undefined ? { value: null, note: r.note ?? 'no CPU sample' } : { value: v },
      [
        {
          anchor: `${PATH_LABELS.minimal2}: per proxy (mean of the two)`,
          result: perProxy('minimal2', HIGH),
          target: { kind: 'ratio-max', k: 1 },
        },
        { anchor: `${PATH_LABELS.minimal}: the proxy`, result: perProxy('minimal', HIGH) },
        { anchor: `${PATH_LABELS.nginx2}: per proxy (mean of the two)`, result: perProxy('nginx2', HIGH) },
      ],
    );
  }

  // Latency at 1 connection (after the same warm-up for every path): p50 added over direct, and p99.
  const added = (p: PathName): Result => {
    const d = at('direct', 1).p50Us;
    const r = at(p, 1);
    return {
      value: r.p50Us !== null && d !== null ? r.p50Us - d : null,
      ...(r.note ? { note: r.note } : {}),
    };
  };
  addRow('HTTP GET 100 B p50 added over direct, 1 connection: two sidecars', 'µs', added('sidecar'), [
    {
      anchor: `${PATH_LABELS.minimal2}, p50 added over direct`,
      result: added('minimal2'),
      target: { kind: 'ratio-max', k: 1 },
    },
    { anchor: `${PATH_LABELS['http-proxy2']}, p50 added over direct`, result: added('http-proxy2') },
    { anchor: `${PATH_LABELS.fastify2}, p50 added over direct`, result: added('fastify2') },
    { anchor: `${PATH_LABELS.nginx2}, p50 added over direct`, result: added('nginx2') },
  ]);
  // gRPC (issue 16): grpc-js unary and server-streaming calls, direct and through the two sidecars (h2c), every
  // party its own process as in the HTTP rows (bench/grpc.ts), after the same warm-up as the HTTP paths.
  log('gRPC rows');
  const g = await runGrpcBench(httpTiming, { concurrencies: [1, HIGH], log });
  const gu = (p: 'direct' | 'sidecar', c: number): HttpResult => g[p].unary[c]!;
  // The row and anchor names of the earlier one-process rows, kept (now 2 processes direct, 4 through the sidecars).
  const GRPC_DIRECT = 'direct: grpc-js client -> server';
  addRow(
    `gRPC unary 16 B, ${HIGH} concurrent calls: two sidecars`,
    'calls/s',
    pick(gu('sidecar', HIGH), 'perSec', true),
    [
      {
        anchor: GRPC_DIRECT,
        result: pick(gu('direct', HIGH), 'perSec', true),
        target: { kind: 'ratio-min', k: 0.5 },
      },
    ],
  );
  addRow('gRPC unary 16 B, 1 call: two sidecars', 'calls/s', pick(gu('sidecar', 1), 'perSec', true), [
    { anchor: GRPC_DIRECT, result: pick(gu('direct', 1), 'perSec', true) },
  ]);
  const grpcAdded = (): Result => {
    const d = gu('direct', 1).p50Us;
    const r = gu('sidecar', 1);
    return {
      value: r.p50Us !== null && d !== null ? r.p50Us - d : null,
      ...(r.note ? { note: r.note } : {}),
    };
  };
  addRow('gRPC unary p50 added over direct, 1 call: two sidecars', 'µs', grpcAdded(), [
    {
      anchor: 'HTTP GET 100 B p50 added over direct, 1 connection: two sidecars',
      result: added('sidecar'),
      target: { kind: 'ratio-max', k: 1 },
    },
  ]);
  for (const c of [1, HIGH]) {
    for (const field of ['p50Us', 'p99Us'] as const) {
      addRow(
        `gRPC unary ${field === 'p50Us' ? 'p50' : 'p99'}, ${c === 1 ? '1 call' : `${c} concurrent calls`}: two sidecars`,
        'µs',
        pick(gu('sidecar', c), field),
        [{ anchor: GRPC_DIRECT, result: pick(gu('direct', c), field) }],
      );
    }
  }
  // CPU µs per call of each sidecar (/proc), beside the same sidecar's CPU per HTTP/1.1 request at the same
  // concurrency: what the HTTP/2 path costs beyond the HTTP/1.1 one.
  for (const c of [HIGH, 1]) {
    for (const side of ['outbound', 'inbound'] as const) {
      const v = gu('sidecar', c).cpuUsPerReq[side];
      const h = at('sidecar', c).cpuUsPerReq[side];
      addRow(
        `CPU µs per gRPC unary call, ${side} sidecar, ${c === 1 ? '1 call' : `${c} concurrent calls`}`,
        'µs',
        v === undefined ? { value: null, note: gu('sidecar', c).note ?? 'no CPU sample' } : { value: v },
        [
          {
            anchor: `CPU µs per HTTP GET, ${side} sidecar, ${c} connection${c === 1 ? '' : 's'}`,
            result: h === undefined ? { value: null, note: 'no CPU sample' } : { value: h },
          },
        ],
      );
    }
  }
  const gs = (p: 'direct' | 'sidecar'): Result => {
    const r = g[p].stream;
    return { value: r?.mbPerSec ?? null, ...(r?.note ? { note: r.note } : {}) };
  };
  addRow('gRPC server streaming, 64 KiB messages: two sidecars', 'MB/s', gs('sidecar'), [
    { anchor: GRPC_DIRECT, result: gs('direct') },
  ]);
  addRow(
    'HTTP GET 100 B p50 added over direct, 1 connection: two sidecars (issue 6 target)',
    'µs',
    added('sidecar'),
    [],
    {
      kind: 'max',
      v: 250,
    },
  );
  addRow('HTTP GET 100 B p99, 1 connection: two sidecars', 'µs', pick(at('sidecar', 1), 'p99Us'), [
    {
      anchor: PATH_LABELS.minimal2,
      result: pick(at('minimal2', 1), 'p99Us'),
      target: { kind: 'max', v: 1_000 },
    },
    { anchor: label('direct'), result: pick(at('direct', 1), 'p99Us') },
  ]);

  // Is the 64-connection path CPU-bound? All its processes together, load generator included, in % of all cores.
  const total = (p: PathName): Result => {
    const r = at(p, HIGH);
    const v = pathCpuPct(r, cores);
    const note = noteOf(r, true);
    return { value: v, ...(note ? { note } : {}) };
  };
  addRow(
    `CPU of all processes, ${HIGH} connections, % of ${cores} cores: two-sidecar path`,
    '%',
    total('sidecar'),
    [
      { anchor: `${PATH_LABELS.minimal2} path`, result: total('minimal2'), target: { kind: 'min', v: 90 } },
      { anchor: `${PATH_LABELS.nginx2} path`, result: total('nginx2') },
      // direct is two processes: its ceiling is the one-thread load generator (its CPU is in the note)
      { anchor: `${PATH_LABELS.direct} path`, result: total('direct') },
      {
        anchor:
          'the whole machine in the same window (/proc/stat; above the path: cores busy with other work)',
        result: { value: at('sidecar', HIGH).machineCpuPct ?? null },
      },
      {
        anchor:
          "the whole machine idle in the same window (/proc/stat idle + iowait; loopback softirq is inside the processes' CPU)",
        result: { value: at('sidecar', HIGH).machine?.idle ?? null },
      },
    ],
  );

  // Memory of each sidecar: idle, right after its last load, and a minute after that (full run only).
  for (const side of ['outbound', 'inbound'] as const) {
    const m = http.rss?.[side];
    const missing = m ? undefined : 'sidecars did not run';
    const mb = (v: number | null | undefined, why?: string): Result => ({
      value: v ?? null,
      ...(v == null && (why ?? missing) ? { note: why ?? missing } : {}),
    });
    addRow(
      `RSS idle, ${side} sidecar (${Math.round(rssIdleMs / 1000)} s after ready, no request yet)`,
      'MB',
      mb(m?.idleMb),
      [],
      {
        kind: 'max',
        v: 50,
      },
    );
    addRow(`RSS right after load, ${side} sidecar`, 'MB', mb(m?.afterLoadMb), [
      { anchor: 'its idle RSS', result: mb(m?.idleMb) },
    ]);
    addRow(`RSS peak (VmHWM), ${side} sidecar`, 'MB', mb(m?.peakMb), [
      { anchor: 'its idle RSS', result: mb(m?.idleMb) },
    ]);
    const settleNote =
      m && m.settleMs === 0
        ? quick
          ? 'not measured in --quick: the minute-long wait runs in the full run only'
          : 'not measured: --rss-settle 0'
        : undefined;
    addRow(
      `RSS ${m && m.settleMs > 0 ? `${Math.round(m.settleMs / 1000)} s` : 'a minute'} after load, ${side} sidecar`,
      'MB',
      mb(m?.settledMb, settleNote),
      [{ anchor: 'its idle RSS', result: mb(m?.idleMb), target: { kind: 'ratio-max', k: 1.1 } }],
    );
    // What those VmRSS readings are made of (no targets: the targets stay on VmRSS above).
    const moments = [
      ['idle', 'idle', undefined],
      ['afterLoad', 'right after load', undefined],
      [
        'settled',
        `${m && m.settleMs > 0 ? `${Math.round(m.settleMs / 1000)} s` : 'a minute'} after load`,
        settleNote,
      ],
    ] as const;
    for (const [part, label, why] of moments) {
      const p = m?.parts?.[part];
      const idle = m?.parts?.idle;
      addRow(`RSS ${label}, ${side} sidecar: anonymous (RssAnon)`, 'MB', mb(p?.anonMb, why), [
        ...(part === 'idle' ? [] : [{ anchor: 'its idle RssAnon', result: mb(idle?.anonMb) }]),
      ]);
      addRow(`RSS ${label}, ${side} sidecar: file pages (RssFile)`, 'MB', mb(p?.fileMb, why), [
        ...(part === 'idle' ? [] : [{ anchor: 'its idle RssFile', result: mb(idle?.fileMb) }]),
      ]);
    }
  }

  httpTable = httpTableText(http, HIGH);
  const raw = `${JSON.stringify({ ...http, timing: httpTiming, rssSettleMs }, null, 2)}\n`;
  mkdirSync(join(benchDir, 'results'), { recursive: true });
  writeFileSync(join(benchDir, 'results', `latest-sidecar-http-${quick ? 'quick' : 'full'}.json`), raw);
  writeFileSync(join(benchDir, 'results', 'latest-sidecar-http.json'), raw);
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
  fmt(r.value, r.unit === 'MB/s' || r.unit === 'MB' ? 1 : 0),
  r.unit,
  r.anchor ?? '-',
  fmt(r.anchorValue, r.unit === 'MB/s' || r.unit === 'MB' ? 1 : 0),
  r.ratio === null ? '-' : `${r.ratio.toFixed(2)}x`,
  r.target ?? '-',
  r.met === null ? '-' : r.met ? 'yes' : 'NO',
]);
const widths = header.map((h, i) => Math.max(h.length, ...table.map((row) => row[i]!.length)));
const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i]!)).join(' | ');
console.log(line(header));
console.log(widths.map((w) => '-'.repeat(w)).join('-|-'));
for (const row of table) console.log(line(row));
if (httpTable)
  console.log(`\nHTTP paths (same run; CPU from /proc, per proxy process in request order):\n${httpTable}`);
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
