/**
 * The gRPC rows (issue 16): a grpc-js unary call (16-byte message) at 1 and 64 concurrent calls, and a
 * server-streaming call (256 messages of 64 KiB), each direct (client -> grpc-js server) and through two sidecars
 * (client -> outbound sidecar's HTTP listener (h2c) -> geminio -> inbound sidecar -> h2c:// target). Every party is
 * its own process, as in the HTTP rows (bench/sidecar-http.ts) and as users deploy them: the grpc-js server
 * (bench/grpc-app.ts), a fresh load generator per measurement (bench/grpc-load.ts) and the two sidecars from the
 * same bundle and configs as the HTTP rows (`startSidecarPair`, service `grpc`; BENCH_SIDECAR_BUNDLE=FILE runs
 * another bundle). CPU time per call of each process comes from /proc, sampled at the load's window. bench/run.ts
 * calls `runGrpcBench()`; on its own:
 *
 *   npx tsx bench/grpc.ts [--quick] [--concurrency 1,64] [--paths direct,sidecar] [--no-stream] [--warmup MS]
 *                         [--profile] [--count]
 *
 * prints the raw results; `--profile` runs both sidecars under `node --cpu-prof` (bench/results/profiles/grpc/
 * {outbound,inbound}/) and prints their top self-time functions; `--count` adds, for the through-sidecar unary
 * windows, each sidecar's heap bytes allocated per call (bench/heap-window.mjs, a preload) and read/write system
 * calls and bytes per call (/proc/<pid>/io), over a window inside the load's whose calls the load generator counts
 * (`BENCH_GRPC_STRACE=1` adds `strace -c -f`, which slows what it traces). Reported, never asserted.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeSidecarSummary } from './cpuprofile.js';
import { firstLine } from './debian.js';
import { benchDir, JsonChild, sleep, type Timing, tsxArgs } from './lib.js';
import {
  failed,
  type HttpResult,
  measureLoad,
  type Proc,
  sidecarCommand,
  startSidecarPair,
} from './sidecar-http.js';

export type GrpcPath = 'direct' | 'sidecar';

/** One path: unary results by concurrency, and the streaming call (one call at a time). */
export interface GrpcPathResults {
  unary: Record<number, HttpResult & { counts?: Record<string, WindowCounts> }>;
  stream?: HttpResult;
}

/** Noise-free counts of one sidecar over a window (--count), per call. */
export interface WindowCounts {
  heapBytesPerCall: number | null;
  /** From /proc/<pid>/io: read and write system calls (syscr, syscw) and bytes (rchar, wchar), per call. */
  readsPerCall: number | null;
  writesPerCall: number | null;
  bytesReadPerCall: number | null;
  bytesWrittenPerCall: number | null;
  /** strace -c (BENCH_GRPC_STRACE=1): system calls per call, by name (those made at least 0.05 times per call). */
  syscallsPerCall: Record<string, number> | null;
}

export interface GrpcResults {
  concurrencies: number[];
  direct: GrpcPathResults;
  sidecar: GrpcPathResults;
  setup: { sidecar: string; cores: number };
}

export interface GrpcOptions {
  concurrencies?: number[];
  paths?: GrpcPath[];
  stream?: boolean;
  profileDir?: string;
  /** Count heap bytes allocated (bench/heap-window.mjs) and system calls (strace -c) per call in each sidecar. */
  count?: boolean;
  log?: (msg: string) => void;
}

/** syscr, syscw, rchar, wchar of /proc/<pid>/io (read and write system calls and bytes, all threads), or null. */
function procIo(pid: number): Record<string, number> | null {
  try {
    const out: Record<string, number> = {};
    for (const line of readFileSync(`/proc/${pid}/io`, 'utf8').split('\n')) {
      const [k, v] = line.split(':');
      if (k && v) out[k.trim()] = Number(v);
    }
    return out;
  } catch {
    return null;
  }
}

interface Totals {
  heap: number | null;
  /** Differences of /proc/<pid>/io over the window. */
  io: Record<string, number> | null;
  sys: Record<string, number> | null;
}

/**
 * Starts the counting of --count on these processes; the returned function stops it and gives the totals. Heap
 * (bench/heap-window.mjs, by SIGUSR2) and /proc/<pid>/io always; strace -c -f only with BENCH_GRPC_STRACE=1 (it
 * slows the process it traces, so the calls batch differently at 64 in flight), or the writes and reads themselves
 * into BENCH_STRACE_TRACE=DIR/strace-<name>.txt.
 */
async function startCounting(
  dir: string,
  pids: Record<string, number>,
): Promise<() => Promise<{ seconds: number; totals: Record<string, Totals> }>> {
  const heapOut = join(dir, 'heap.jsonl');
  const trace = process.env.BENCH_STRACE_TRACE;
  const useStrace = Boolean(trace) || process.env.BENCH_GRPC_STRACE === '1';
  const procs = Object.entries(pids).map(([name, pid]) => {
    const file = join(dir, `strace-${name}.txt`);
    if (!useStrace) return { name, pid, file, child: undefined };
    const how = trace ? ['-e', 'trace=write,writev,read', '-s', '0'] : ['-c'];
    const out = trace ? join(trace, `strace-${name}.txt`) : file;
    const child = spawn('strace', [...how, '-f', '-p', String(pid), '-o', out], { stdio: 'ignore' });
    child.on('error', () => {});
    return { name, pid, file, child };
  });
  if (useStrace) await sleep(300); // strace attaches to every thread
  for (const { pid } of procs) process.kill(pid, 'SIGUSR2');
  const io0 = Object.fromEntries(procs.map(({ name, pid }) => [name, procIo(pid)]));
  const t0 = performance.now();
  return async () => {
    for (const { pid } of procs) process.kill(pid, 'SIGUSR2');
    const io1 = Object.fromEntries(procs.map(({ name, pid }) => [name, procIo(pid)]));
    const seconds = (performance.now() - t0) / 1000;
    await Promise.all(
      procs.map(
        ({ child }) =>
          new Promise<void>((resolve) => {
            if (!child || child.exitCode !== null) return resolve();
            child.once('close', () => resolve());
            child.kill('SIGINT');
          }),
      ),
    );
    for (
      let i = 0;
      i < 20 && (readFileSync(heapOut, { flag: 'a+' }).toString().match(/\n/g)?.length ?? 0) < procs.length;
      i++
    )
      await sleep(100); // the heap lines
    let heapLines: Array<{ pid: number; allocatedBytes: number }> = [];
    try {
      heapLines = readFileSync(heapOut, 'utf8')
        .trim()
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l));
    } catch {}
    rmSync(heapOut, { force: true });
    const totals: Record<string, Totals> = {};
    for (const { name, pid, file, child } of procs) {
      let sys: Record<string, number> | null = null;
      if (child && !trace) {
        try {
          sys = {};
          for (const line of readFileSync(file, 'utf8').split('\n')) {
            const f = line.trim().split(/\s+/);
            // % time, seconds, usecs/call, calls, [errors], syscall
            if (f.length >= 5 && /^\d/.test(f[0]!) && f[f.length - 1] !== 'total')
              sys[f[f.length - 1]!] = Number(f[3]);
          }
        } catch {
          sys = null;
        }
      }
      const a = io0[name];
      const b = io1[name];
      const io = a && b ? Object.fromEntries(Object.keys(b).map((k) => [k, b[k]! - (a[k] ?? 0)])) : null;
      totals[name] = { heap: heapLines.find((h) => h.pid === pid)?.allocatedBytes ?? null, io, sys };
    }
    return { seconds, totals };
  };
}

/** Runs the gRPC rows; never throws (failures become null values with notes). */
export async function runGrpcBench(timing: Timing, o: GrpcOptions = {}): Promise<GrpcResults> {
  const log = o.log ?? ((msg: string) => process.stderr.write(`${msg}\n`));
  const concurrencies = o.concurrencies ?? [1, 64];
  const paths = o.paths ?? ['direct', 'sidecar'];
  const out: GrpcResults = {
    concurrencies,
    direct: { unary: {} },
    sidecar: { unary: {} },
    setup: { sidecar: '-', cores: cpus().length },
  };
  const dir = mkdtempSync(join(tmpdir(), 'geminio-bench-grpc-'));
  // Where bench/heap-window.mjs (a preload of both sidecars under --count) writes its lines.
  if (o.count) process.env.HEAP_OUT = join(dir, 'heap.jsonl');
  const procs: Proc[] = [];
  let app: JsonChild | undefined;
  const fill = (note: string) => {
    for (const p of paths) {
      for (const c of concurrencies) out[p].unary[c] ??= failed(note);
      if (o.stream !== false) out[p].stream ??= failed(note);
    }
  };
  try {
    app = new JsonChild(process.execPath, tsxArgs('grpc-app.ts'));
    const ready = await app.next(30_000);
    const appPort = Number(ready.port);
    const appPid = Number(ready.pid);
    const ports: Partial<Record<GrpcPath, { port: number; pids: () => Record<string, number> }>> = {};
    if (paths.includes('direct')) ports.direct = { port: appPort, pids: () => ({ app: appPid }) };
    if (paths.includes('sidecar')) {
      const { args, how } = await sidecarCommand(log);
      out.setup.sidecar = how;
      const pair = await startSidecarPair({
        dir,
        args,
        service: 'grpc',
        target: `h2c://127.0.0.1:${appPort}`,
        procs,
        ...(o.profileDir ? { profileDir: o.profileDir } : {}),
        ...(o.count ? { nodeArgs: ['--import', join(benchDir, 'heap-window.mjs')] } : {}),
      });
      ports.sidecar = {
        port: pair.web,
        pids: () => ({ outbound: pair.outProc.pid, inbound: pair.inProc.pid, app: appPid }),
      };
    }
    const load = (port: number, mode: 'unary' | 'stream', concurrency: number) =>
      tsxArgs('grpc-load.ts').concat(JSON.stringify({ port, mode, concurrency, ...timing }));
    for (const c of concurrencies) {
      for (const p of paths) {
        const t = ports[p];
        if (!t) continue;
        log(`  grpc  unary ${p} concurrency ${c}`);
        if (!o.count || p !== 'sidecar') {
          out[p].unary[c] = await measureLoad(load(t.port, 'unary', c), t.pids());
          continue;
        }
        const { outbound, inbound } = t.pids();
        let counted: Awaited<ReturnType<Awaited<ReturnType<typeof startCounting>>>> | undefined;
        let calls = 0;
        // The counting window lies inside the load's: from strace's attach to 500 ms before the load's end, its
        // calls counted by the load generator itself ("mark" lines).
        const r: GrpcPathResults['unary'][number] = await measureLoad(load(t.port, 'unary', c), t.pids(), {
          start: async (lg) => {
            const t0 = performance.now();
            const stop = await startCounting(dir, { outbound: outbound!, inbound: inbound! });
            lg.send('mark');
            const c0 = (await lg.next(10_000)).completed as number;
            await sleep(Math.max(200, timing.durationMs - 500 - (performance.now() - t0)));
            lg.send('mark');
            const c1 = (await lg.next(10_000)).completed as number;
            counted = await stop();
            calls = c1 - c0;
          },
        });
        if (counted && calls > 0) {
          r.counts = {};
          for (const [name, v] of Object.entries(counted.totals)) {
            const sys = v.sys
              ? Object.fromEntries(
                  Object.entries(v.sys)
                    .map(([k, n]) => [k, Math.round((100 * n) / calls) / 100] as const)
                    .filter(([, n]) => n >= 0.05),
                )
              : null;
            const per = (k: string) =>
              v.io?.[k] === undefined ? null : Math.round((100 * v.io[k]!) / calls) / 100;
            r.counts[name] = {
              heapBytesPerCall: v.heap === null ? null : Math.round(v.heap / calls),
              readsPerCall: per('syscr'),
              writesPerCall: per('syscw'),
              bytesReadPerCall: per('rchar'),
              bytesWrittenPerCall: per('wchar'),
              syscallsPerCall: sys,
            };
          }
        }
        out[p].unary[c] = r;
      }
    }
    if (o.stream !== false) {
      for (const p of paths) {
        const t = ports[p];
        if (!t) continue;
        log(`  grpc  stream ${p}`);
        out[p].stream = await measureLoad(load(t.port, 'stream', 1), t.pids());
      }
    }
  } catch (err) {
    log(`    gRPC rows FAILED: ${firstLine(err)}`);
    fill(`failed: ${firstLine(err)}`);
  } finally {
    await Promise.all(procs.map((p) => p.stop('SIGTERM', 10_000)));
    await app?.stop();
    rmSync(dir, { recursive: true, force: true });
  }
  fill('not measured');
  return out;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const arg = (flag: string) => {
    const i = process.argv.indexOf(flag);
    return i >= 0 ? process.argv[i + 1] : undefined;
  };
  const quick = process.argv.includes('--quick');
  const timing: Timing = quick
    ? { warmupMs: 1_000, durationMs: 1_000 }
    : { warmupMs: 3_000, durationMs: 3_000 };
  if (arg('--warmup')) timing.warmupMs = Number(arg('--warmup'));
  const profile = process.argv.includes('--profile');
  const profileDir = join(benchDir, 'results', 'profiles', 'grpc');
  const concurrencies = (arg('--concurrency') ?? '1,64').split(',').map(Number);
  const paths = (arg('--paths') ?? (profile ? 'sidecar' : 'direct,sidecar')).split(',') as GrpcPath[];
  const r = await runGrpcBench(timing, {
    concurrencies,
    paths,
    stream: !process.argv.includes('--no-stream') && !profile,
    count: process.argv.includes('--count'),
    ...(profile ? { profileDir } : {}),
  });
  console.log(JSON.stringify(r, null, 2));
  if (profile) {
    writeSidecarSummary(
      profileDir,
      `CPU profiles of the sidecars, gRPC unary, concurrency ${concurrencies.join(',')}`,
    );
  }
  process.exit(0);
}
