/**
 * The sidecar rows (issues 6 and 14): HTTP requests/s, latency and CPU per request through the two-sidecar path,
 * against the same app reached directly and through every proxy a user would pick instead, one and two hops,
 * all in the same run:
 *
 *   direct       load generator -> app
 *   nginx        load generator -> nginx -> app                 nginx2: -> nginx -> nginx -> app
 *   minimal      load generator -> minimal Node proxy -> app    minimal2: two of them in a chain
 *   http-proxy   load generator -> node-http-proxy -> app       http-proxy2: two of them in a chain
 *   fastify      load generator -> @fastify/http-proxy -> app   fastify2: two of them in a chain
 *   sidecar      load generator -> outbound sidecar -> geminio (one TCP connection) -> inbound sidecar -> app
 *
 * Every box is its own process: the app (bench/http-app.ts, 100-byte JSON answers), the load generator
 * (bench/http-load.ts, undici Pool, one per measurement), each Node proxy (bench/http-proxy.ts), each nginx
 * (`nginx -p DIR -c DIR/nginx.conf -g 'daemon off;'`, one worker, installed with apt-get when absent) and the two
 * sidecars (the bundle of sidecar/cli.ts built into bench/results/bin/ from the current sources, or sidecar/cli.ts
 * through tsx if bundling fails). Every path gets the same warm-up (timing.warmupMs of load before each window:
 * 3 s in bench/run.ts's full run, 1 s in --quick) in processes started before the first measurement. The CPU time of each process in the window comes from
 * /proc (the schedstat of each of its threads), reported as % of one core and as µs per request. The sidecars'
 * RSS (/proc/<pid>/status) is read idle, right after their last load, and `rssSettleMs` later. bench/run.ts
 * calls `runSidecarHttp()`; on its own:
 *
 *   npx tsx bench/sidecar-http.ts [--quick] [--profile] [--concurrency 1,64] [--paths direct,minimal2,sidecar]
 *                                 [--warmup MS] [--rss-settle MS] [--rss-idle MS]
 *
 * prints the raw results; `--profile` runs both sidecars under `node --cpu-prof` (bench/results/profiles/
 * sidecar-http/{outbound,inbound}/) and prints their top self-time functions. Results are reported, never
 * asserted.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeSidecarSummary } from './cpuprofile.js';
import { ensureDebianBinary, firstLine, run } from './debian.js';
import type { ProxyKind } from './http-proxy.js';
import { benchDir, freePort, JsonChild, repoDir, sidecarEnv, sleep, type Timing, tsxArgs } from './lib.js';

export const PATHS = [
  'direct',
  'nginx',
  'nginx2',
  'minimal',
  'minimal2',
  'http-proxy',
  'http-proxy2',
  'fastify',
  'fastify2',
  'sidecar',
  'sidecar3',
] as const;
export type PathName = (typeof PATHS)[number];

/** What each path is, for the tables. */
export const PATH_LABELS: Record<PathName, string> = {
  direct: 'direct: client -> app',
  nginx: 'nginx, one hop',
  nginx2: 'nginx, two hops',
  minimal: 'minimal Node proxy (http.Server + undici Pool.stream), one hop',
  minimal2: 'minimal Node proxy, two hops',
  'http-proxy': 'http-proxy (node-http-proxy), one hop',
  'http-proxy2': 'http-proxy, two hops',
  fastify: '@fastify/http-proxy, one hop',
  fastify2: '@fastify/http-proxy, two hops',
  sidecar: 'two sidecars: outbound -> geminio -> inbound',
  sidecar3: 'outbound sidecar balancing over three inbound sidecars (127.0.0.1-3)',
};

/** The proxy processes of each path, in the order a request crosses them (the CPU columns). */
export const PATH_PROXIES: Record<PathName, string[]> = {
  direct: [],
  nginx: ['proxy'],
  nginx2: ['proxy1', 'proxy2'],
  minimal: ['proxy'],
  minimal2: ['proxy1', 'proxy2'],
  'http-proxy': ['proxy'],
  'http-proxy2': ['proxy1', 'proxy2'],
  fastify: ['proxy'],
  fastify2: ['proxy1', 'proxy2'],
  sidecar: ['outbound', 'inbound'],
  sidecar3: ['outbound', 'inbound1', 'inbound2', 'inbound3'],
};

const NODE_PROXY: Partial<Record<PathName, ProxyKind>> = {
  minimal: 'minimal',
  minimal2: 'minimal',
  'http-proxy': 'http-proxy',
  'http-proxy2': 'http-proxy',
  fastify: 'fastify',
  fastify2: 'fastify',
};

/** One measurement of one path at one concurrency. */
export interface HttpResult {
  perSec: number | null;
  p50Us: number | null;
  p90Us: number | null;
  p99Us: number | null;
  maxUs: number | null;
  meanUs: number | null;
  count: number | null;
  /** CPU use of each process during the window, in % of one core (load = the load generator). */
  cpu: Record<string, number>;
  /** CPU time of each process in the window divided by the requests completed in it, in µs. */
  cpuUsPerReq: Record<string, number>;
  /**
   * The whole machine's busy CPU in the window (/proc/stat: all but idle and iowait), in % of all cores: beside the
   * path's own processes it tells idle cores (the path waits on itself) from cores busy with something else.
   */
  machineCpuPct?: number;
  /**
   * The whole machine's CPU in the window split as /proc/stat counts it (ticks), in % of all cores: user (+nice),
   * system, softirq, irq, steal (the hypervisor's), idle (+iowait). Loopback TCP runs its receive path as softirq;
   * with this kernel's tick accounting (no CONFIG_IRQ_TIME_ACCOUNTING) softirq run in a process's context is in
   * that process's schedstat time, softirq run by ksoftirqd is not (see `ksoftirqdPct`).
   */
  machine?: Record<'user' | 'system' | 'softirq' | 'irq' | 'steal' | 'idle', number>;
  /**
   * How often the cores went idle in the window (/sys/devices/system/cpu/cpu<N>/cpuidle/state<K>/usage and time,
   * all cores and states): idle entries per second and their mean length in µs. On this VM (cpuidle-haltpoll with
   * guest_halt_poll_ns 0) every entry is a HLT, and a task woken onto a halted core waits for it to wake.
   */
  idleEntries?: { perSec: number; meanUs: number };
  /**
   * Per request in the window, for each process: read and write syscalls (/proc/<pid>/io syscr, syscw: read/readv,
   * write/writev of every thread) and the main thread's voluntary context switches (the event loop went to sleep
   * in epoll: one per batch of input it served) and involuntary ones (preempted), from its /proc status.
   */
  perRequest?: Record<string, { reads: number; writes: number; sleeps: number; preempted: number }>;
  /**
   * With BENCH_HTTP_STATES=1: the share of samples (every 2 ms of the window, /proc/<pid>/task/<tid>/stat of the
   * main thread of each process of the path, load generator included) in which 0, 1, 2, ... of them were
   * runnable (on a core or waiting for one), in %. With two cores, time with fewer than two runnable is time the
   * path itself leaves a core idle; time with two or more while the machine idles is time a woken process waits
   * for a core to wake. Off by default: the sampling costs the orchestrator about 1% of a core.
   */
  runnable?: number[];
  /** CPU of the ksoftirqd threads in the window (softirq work deferred out of the path's processes), % of one core. */
  ksoftirqdPct?: number;
  /**
   * Time each process spent runnable but waiting for a core in the window (run-queue wait, schedstat field 2 of
   * each thread), in % of one core; the rest of the window it was on a core (`cpu`) or asleep (waiting for input).
   */
  runWaitPct?: Record<string, number>;
  /** Streaming loads (bench/grpc-load.ts): MB/s of message bytes read in the window. */
  mbPerSec?: number;
  /** Sidecar path: geminio streams the outbound sidecar opened during the whole measurement (warm-up included). */
  streamsOpened?: number;
  note?: string;
}

export interface SidecarHttpResults {
  concurrencies: number[];
  /** results[path][concurrency] */
  results: Record<PathName, Record<number, HttpResult>>;
  /** How the sidecars ran (bundle or tsx) and nginx's version, for the docs. */
  setup: { sidecar: string; nginx: string | null; cores: number };
  /** The sidecars' memory, in MB (10^6 bytes): absent when the sidecar path did not run. */
  rss?: Record<'outbound' | 'inbound', RssReport>;
}

export interface RssReport {
  /** VmRSS once ready, before any request. */
  idleMb: number | null;
  /** VmRSS right after the sidecar path's last measurement. */
  afterLoadMb: number | null;
  /** VmHWM (the highest RSS) at that point. */
  peakMb: number | null;
  /** VmRSS settleMs after the last load (null when settleMs is 0: --quick). */
  settledMb: number | null;
  settleMs: number;
  /**
   * What each VmRSS reading is made of: RssAnon (the V8 heap, malloc'ed memory, thread stacks) and RssFile (pages
   * of files mapped in: the node binary's code and data that the process has touched), at the same moments.
   */
  parts: Record<'idle' | 'afterLoad' | 'settled', { anonMb: number | null; fileMb: number | null }>;
}

export interface SidecarHttpOptions {
  concurrencies: number[];
  paths?: PathName[];
  log?: (msg: string) => void;
  /** Run both sidecars under --cpu-prof into this directory ({outbound,inbound}/). */
  profileDir?: string;
  /** How long after the sidecars' last load their RSS is read again (0: not read). */
  rssSettleMs?: number;
  /**
   * How long after both sidecars are ready their idle RSS is read (default 1000). The full run waits 10 s: V8's
   * memory reducer runs its first collection about 8 s after start, so what a sidecar idles at comes after it.
   */
  rssIdleMs?: number;
}

const bundlePath = join(benchDir, 'results', 'bin', 'geminio-sidecar.mjs');

/** A row that could not be measured: every figure null, the reason in the note. */
export function failed(note: string): HttpResult {
  return {
    perSec: null,
    p50Us: null,
    p90Us: null,
    p99Us: null,
    maxUs: null,
    meanUs: null,
    count: null,
    cpu: {},
    cpuUsPerReq: {},
    note,
  };
}

/** nginx, installed from Debian packages when absent (nginx-light, then nginx). Only the bench does this. */
export function ensureNginx(log: (msg: string) => void): Promise<{ bin: string | null; note?: string }> {
  return ensureDebianBinary('nginx', ['nginx-light', 'nginx'], log);
}

/** A child we stop with a signal (sidecars, nginx); its stderr tail is kept for error messages. */
export class Proc {
  readonly child: ChildProcess;
  private tail = '';
  exited = false;
  private readonly gone: Promise<void>;

  constructor(
    readonly name: string,
    cmd: string,
    args: string[],
    /** Added to this process's environment. */
    env: Record<string, string> = {},
  ) {
    this.child = spawn(cmd, args, {
      cwd: repoDir,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, ...env },
    });
    const keep = (chunk: Buffer) => {
      this.tail = (this.tail + chunk.toString()).slice(-4_096);
      if (process.env.BENCH_DEBUG) process.stderr.write(`[${name}] ${chunk}`);
    };
    this.child.stdout!.on('data', keep);
    this.child.stderr!.on('data', keep);
    this.gone = new Promise((resolve) =>
      this.child.once('close', () => {
        this.exited = true;
        resolve();
      }),
    );
  }

  get pid(): number {
    return this.child.pid ?? 0;
  }

  output(): string {
    return this.tail.trim();
  }

  /** `signal`, then SIGKILL after graceMs. */
  async stop(signal: NodeJS.Signals = 'SIGTERM', graceMs = 5_000): Promise<void> {
    if (this.exited) return;
    this.child.kill(signal);
    const timer = setTimeout(() => this.child.kill('SIGKILL'), graceMs);
    await this.gone;
    clearTimeout(timer);
  }
}

/** Polls an HTTP URL until it answers 200 (or throws after timeoutMs). */
export async function waitHttp(url: string, proc: Proc, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  while (Date.now() < deadline) {
    if (proc.exited) throw new Error(`${proc.name} exited: ${proc.output()}`);
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(1_000) });
      last = `${res.status} ${await res.text()}`;
      if (res.status === 200) return;
    } catch (err) {
      last = firstLine(err);
    }
    await sleep(50);
  }
  throw new Error(`${proc.name}: ${url} not ready within ${timeoutMs} ms (last: ${last}) ${proc.output()}`);
}

/**
 * CPU time of a process so far, in seconds, from Linux /proc: the sum over its threads of
 * /proc/<pid>/task/<tid>/schedstat (time on CPU, in ns), else utime + stime of /proc/<pid>/stat (100 ticks per
 * second: too coarse for a 1 s window).
 */
function cpuSeconds(pid: number): number | null {
  const s = schedSeconds(pid);
  if (s) return s.run;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return null;
  }
}

/**
 * Time on a core and time runnable but waiting for one, in seconds, summed over the threads of a process
 * (/proc/<pid>/task/<tid>/schedstat: run ns, run-queue wait ns, timeslices), or null.
 */
function schedSeconds(pid: number): { run: number; wait: number } | null {
  try {
    let run = 0;
    let wait = 0;
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      const f = readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ');
      run += Number(f[0]);
      wait += Number(f[1]);
    }
    if (run > 0 && Number.isFinite(run) && Number.isFinite(wait)) return { run: run / 1e9, wait: wait / 1e9 };
  } catch {
    // no schedstat (another kernel): the caller falls back
  }
  return null;
}

/** The pids of the ksoftirqd threads (one per core), read once. */
let ksoftirqdPids: number[] | undefined;
function ksoftirqd(): number[] {
  if (ksoftirqdPids) return ksoftirqdPids;
  ksoftirqdPids = [];
  try {
    for (const d of readdirSync('/proc')) {
      if (!/^\d+$/.test(d)) continue;
      try {
        if (readFileSync(`/proc/${d}/comm`, 'utf8').startsWith('ksoftirqd/')) ksoftirqdPids.push(Number(d));
      } catch {
        // gone
      }
    }
  } catch {
    // no /proc
  }
  return ksoftirqdPids;
}

/** Read and write syscalls of a process, and its main thread's context switches so far, or null. */
function ioCounts(pid: number): { reads: number; writes: number; sleeps: number; preempted: number } | null {
  try {
    const io = readFileSync(`/proc/${pid}/io`, 'utf8');
    const st = readFileSync(`/proc/${pid}/task/${pid}/status`, 'utf8');
    const num = (text: string, key: string) => Number(new RegExp(`^${key}:\\s+(\\d+)`, 'm').exec(text)?.[1]);
    const c = {
      reads: num(io, 'syscr'),
      writes: num(io, 'syscw'),
      sleeps: num(st, 'voluntary_ctxt_switches'),
      preempted: num(st, 'nonvoluntary_ctxt_switches'),
    };
    return Object.values(c).every(Number.isFinite) ? c : null;
  } catch {
    return null;
  }
}

/** Samples, every 2 ms until stopped, how many of these processes' main threads are runnable (state R). */
function sampleStates(pids: number[]): { stop: () => number[] } {
  const counts = new Array<number>(pids.length + 1).fill(0);
  let samples = 0;
  const timer = setInterval(() => {
    let n = 0;
    for (const pid of pids) {
      try {
        const st = readFileSync(`/proc/${pid}/task/${pid}/stat`, 'utf8');
        if (st[st.lastIndexOf(')') + 2] === 'R') n++;
      } catch {
        // gone
      }
    }
    counts[n]!++;
    samples++;
  }, 2);
  return {
    stop: () => {
      clearInterval(timer);
      return counts.map((c) => Math.round((1000 * c) / Math.max(1, samples)) / 10);
    },
  };
}

/** Idle entries and idle µs of all cores so far (cpuidle sysfs), or null. */
function cpuidleTotals(): { entries: number; us: number } | null {
  try {
    let entries = 0;
    let us = 0;
    const base = '/sys/devices/system/cpu';
    for (const cpu of readdirSync(base)) {
      if (!/^cpu\d+$/.test(cpu)) continue;
      let states: string[];
      try {
        states = readdirSync(`${base}/${cpu}/cpuidle`).filter((d) => d.startsWith('state'));
      } catch {
        continue;
      }
      for (const st of states) {
        entries += Number(readFileSync(`${base}/${cpu}/cpuidle/${st}/usage`, 'utf8'));
        us += Number(readFileSync(`${base}/${cpu}/cpuidle/${st}/time`, 'utf8'));
      }
    }
    return entries > 0 ? { entries, us } : null;
  } catch {
    return null;
  }
}

/** CPU seconds of all ksoftirqd threads so far. */
function ksoftirqdSeconds(): number {
  return ksoftirqd().reduce((a, pid) => a + (schedSeconds(pid)?.run ?? 0), 0);
}

/** The fields of the first line of /proc/stat (jiffies) the window reports, or null. */
interface MachineJiffies {
  busy: number;
  total: number;
  parts: Record<'user' | 'system' | 'softirq' | 'irq' | 'steal' | 'idle', number>;
}
function machineJiffies(): MachineJiffies | null {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n')[0]!;
    // user nice system idle iowait irq softirq steal (guest time is inside user)
    const v = line.trim().split(/\s+/).slice(1, 9).map(Number);
    const total = v.reduce((a, b) => a + b, 0);
    const parts = {
      user: v[0]! + v[1]!,
      system: v[2]!,
      softirq: v[6]!,
      irq: v[5]!,
      steal: v[7]!,
      idle: v[3]! + v[4]!,
    };
    return { busy: total - v[3]! - v[4]!, total, parts };
  } catch {
    return null;
  }
}

interface Memory {
  rssMb: number | null;
  peakMb: number | null;
  anonMb: number | null;
  fileMb: number | null;
}

/** VmRSS, VmHWM, RssAnon and RssFile of a process, in MB (10^6 bytes), or nulls. */
function memoryOf(pid: number): Memory {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (key: string) => {
      const m = new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status);
      return m ? (Number(m[1]) * 1024) / 1e6 : null;
    };
    return { rssMb: kb('VmRSS'), peakMb: kb('VmHWM'), anonMb: kb('RssAnon'), fileMb: kb('RssFile') };
  } catch {
    return { rssMb: null, peakMb: null, anonMb: null, fileMb: null };
  }
}

const partsOf = (m: Memory) => ({ anonMb: m.anonMb, fileMb: m.fileMb });

/** The child pids of pid (nginx's worker). */
function childrenOf(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8')
      .trim()
      .split(/\s+/)
      .filter(Boolean)
      .map(Number);
  } catch {
    return [];
  }
}

let sidecarCommandOnce: Promise<{ args: string[]; how: string }> | undefined;

/** The sidecar command: a bundle of the current sidecar/ sources (production shape), else tsx. Built once a run. */
export function sidecarCommand(log: (msg: string) => void): Promise<{ args: string[]; how: string }> {
  sidecarCommandOnce ??= buildSidecarCommand(log);
  return sidecarCommandOnce;
}

async function buildSidecarCommand(log: (msg: string) => void): Promise<{ args: string[]; how: string }> {
  // BENCH_SIDECAR_BUNDLE: run this bundle instead (an A/B comparison: a bundle built from another commit with
  // `npx tsx scripts/bundle.ts FILE`, measured in runs alternating with the current sources).
  const given = process.env.BENCH_SIDECAR_BUNDLE;
  if (given) return { args: [given], how: `the bundle ${given} (BENCH_SIDECAR_BUNDLE)` };
  try {
    const { bundle } = (await import('../scripts/bundle.js')) as { bundle: (out: string) => Promise<string> };
    mkdirSync(join(benchDir, 'results', 'bin'), { recursive: true });
    await bundle(bundlePath);
    return { args: [bundlePath], how: 'bundle of sidecar/cli.ts (esbuild, built at the start of the run)' };
  } catch (err) {
    log(`    sidecar bundle failed (${firstLine(err)}); running sidecar/cli.ts through tsx`);
    return {
      args: ['--import', 'tsx', join(repoDir, 'sidecar', 'cli.ts')],
      how: 'sidecar/cli.ts through tsx',
    };
  }
}

function nginxConfig(dir: string, listen: number, upstreamPort: number, keepalive: number): string {
  return `# generated by bench/sidecar-http.ts
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${dir}/client_body;
  proxy_temp_path ${dir}/proxy;
  upstream app {
    server 127.0.0.1:${upstreamPort};
    keepalive ${keepalive};
  }
  server {
    listen 127.0.0.1:${listen};
    location / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
`;
}

/** How to start the two sidecars of a two-sidecar path (bench/grpc.ts starts them the same way). */
export interface SidecarPairOptions {
  /** Where the generated configs go. */
  dir: string;
  /** The sidecar command's node arguments (`sidecarCommand().args`). */
  args: string[];
  /** The inbound's service name (also the outbound listener's service) and its target. */
  service: string;
  target: string;
  /** Every started process is pushed here (the caller stops them). */
  procs: Proc[];
  /** Run both under --cpu-prof into this directory ({outbound,inbound}/). */
  profileDir?: string;
  /** More node flags for both (after BENCH_SIDECAR_NODE_ARGS). */
  nodeArgs?: string[];
}

/**
 * The inbound sidecar (`inbound.listen`, one service) and the outbound sidecar (one upstream, one HTTP listener
 * `web` for that service), each its own process on free loopback ports, both `log.level: warn`, every other key at
 * its default; resolves once both answer /readyz.
 */
export async function startSidecarPair(
  o: SidecarPairOptions,
): Promise<{ inProc: Proc; outProc: Proc; web: number; adminIn: number; adminOut: number }> {
  const [geminio, web, adminIn, adminOut] = await Promise.all([
    freePort(),
    freePort(),
    freePort(),
    freePort(),
  ]);
  // BENCH_SIDECAR_LOG_LEVEL=info: an access line per exchange (the default warn writes none), to measure them.
  const log_ = { level: process.env.BENCH_SIDECAR_LOG_LEVEL ?? 'warn', format: 'json' };
  const inbound = {
    name: 'bench-inbound',
    log: log_,
    admin: { listen: `127.0.0.1:${adminIn}` },
    inbound: { listen: `127.0.0.1:${geminio}` },
    services: { [o.service]: { target: o.target } },
  };
  const outbound = {
    name: 'bench-outbound',
    log: log_,
    admin: { listen: `127.0.0.1:${adminOut}` },
    upstreams: { in: { address: `127.0.0.1:${geminio}` } },
    outbound: { http: [{ name: 'web', listen: `127.0.0.1:${web}`, upstream: 'in', service: o.service }] },
  };
  const start = (side: 'inbound' | 'outbound', config: unknown): Proc => {
    const file = join(o.dir, `${side}.json`);
    writeFileSync(file, JSON.stringify(config, null, 2));
    // BENCH_SIDECAR_NODE_ARGS: extra node flags for both sidecars (e.g. --trace-deopt, with BENCH_DEBUG=1).
    const prof = (process.env.BENCH_SIDECAR_NODE_ARGS ?? '').split(' ').filter(Boolean);
    prof.push(...(o.nodeArgs ?? []));
    if (o.profileDir) {
      const pdir = join(o.profileDir, side);
      rmSync(pdir, { recursive: true, force: true });
      mkdirSync(pdir, { recursive: true });
      prof.push('--cpu-prof', `--cpu-prof-dir=${pdir}`);
    }
    const p = new Proc(side, process.execPath, [...prof, ...o.args, 'run', '--config', file], sidecarEnv());
    o.procs.push(p);
    return p;
  };
  const inProc = start('inbound', inbound);
  await waitHttp(`http://127.0.0.1:${adminIn}/readyz`, inProc);
  const outProc = start('outbound', outbound);
  await waitHttp(`http://127.0.0.1:${adminOut}/readyz`, outProc);
  return { inProc, outProc, web, adminIn, adminOut };
}

interface Target {
  url: string;
  /** The processes to sample, by role (PATH_PROXIES, plus app). */
  pids: () => Record<string, number>;
  metricsUrl?: string;
}

/** Runs every path's measurements; never throws (failures become null values with notes). */
export async function runSidecarHttp(timing: Timing, o: SidecarHttpOptions): Promise<SidecarHttpResults> {
  const log = o.log ?? ((msg: string) => process.stderr.write(`${msg}\n`));
  const paths = o.paths ?? [...PATHS];
  const results = Object.fromEntries(PATHS.map((p) => [p, {}])) as SidecarHttpResults['results'];
  const setup: SidecarHttpResults['setup'] = { sidecar: '-', nginx: null, cores: cpus().length };
  const fillAll = (path: PathName, note: string) => {
    for (const c of o.concurrencies) results[path][c] ??= failed(note);
  };
  const keepalive = Math.max(...o.concurrencies, 1);
  const dir = mkdtempSync(join(tmpdir(), 'geminio-bench-http-'));
  const procs: Proc[] = [];
  const children: JsonChild[] = [];
  let app: JsonChild | undefined;
  let rss: SidecarHttpResults['rss'];
  let sidecarPids: { outbound: number; inbound: number } | undefined;
  let lastSidecarLoad = 0;
  const targets: Partial<Record<PathName, Target>> = {};
  try {
    // The app.
    app = new JsonChild(process.execPath, tsxArgs('http-app.ts'));
    const ready = await app.next(30_000);
    const appPort = Number(ready.port);
    const appPid = Number(ready.pid);
    if (paths.includes('direct')) {
      targets.direct = { url: `http://127.0.0.1:${appPort}`, pids: () => ({ app: appPid }) };
    }

    // nginx, one and two hops: one nginx (master + one worker) per hop, each its own config.
    const startNginx = async (bin: string, name: string, upstreamPort: number) => {
      const port = await freePort();
      const ndir = join(dir, name);
      mkdirSync(ndir, { recursive: true });
      const conf = join(ndir, 'nginx.conf');
      writeFileSync(conf, nginxConfig(ndir, port, upstreamPort, keepalive));
      const nginx = new Proc(name, bin, [
        '-p',
        ndir,
        '-e',
        join(ndir, 'error.log'),
        '-c',
        conf,
        '-g',
        'daemon off;',
      ]);
      procs.push(nginx);
      await waitHttp(`http://127.0.0.1:${port}/`, nginx);
      return { port, worker: () => childrenOf(nginx.pid)[0] ?? nginx.pid };
    };
    const nginxPaths = (['nginx', 'nginx2'] as const).filter((p) => paths.includes(p));
    if (nginxPaths.length > 0) {
      const { bin, note } = await ensureNginx(log);
      if (!bin) for (const p of nginxPaths) fillAll(p, note ?? 'nginx unavailable');
      else {
        setup.nginx = (await run(bin, ['-v'], 10_000).catch((err) => firstLine(err))).trim();
        for (const p of nginxPaths) {
          try {
            if (p === 'nginx') {
              const n = await startNginx(bin, 'nginx', appPort);
              targets.nginx = {
                url: `http://127.0.0.1:${n.port}`,
                pids: () => ({ proxy: n.worker(), app: appPid }),
              };
            } else {
              const back = await startNginx(bin, 'nginx2-back', appPort);
              const front = await startNginx(bin, 'nginx2-front', back.port);
              targets.nginx2 = {
                url: `http://127.0.0.1:${front.port}`,
                pids: () => ({ proxy1: front.worker(), proxy2: back.worker(), app: appPid }),
              };
            }
          } catch (err) {
            log(`    ${p} FAILED: ${firstLine(err)}`);
            fillAll(p, `${p} anchor failed: ${firstLine(err)}`);
          }
        }
      }
    }

    // The Node proxies, one and two hops (bench/http-proxy.ts, one process each).
    const startProxy = async (kind: ProxyKind, upstreamPort: number) => {
      const child = new JsonChild(process.execPath, [
        ...tsxArgs('http-proxy.ts'),
        JSON.stringify({ kind, target: `http://127.0.0.1:${upstreamPort}`, connections: keepalive }),
      ]);
      children.push(child);
      const r = await child.next(30_000);
      return { port: Number(r.port), pid: Number(r.pid) };
    };
    for (const p of paths) {
      const kind = NODE_PROXY[p];
      if (!kind) continue;
      try {
        if (!p.endsWith('2')) {
          const one = await startProxy(kind, appPort);
          targets[p] = { url: `http://127.0.0.1:${one.port}`, pids: () => ({ proxy: one.pid, app: appPid }) };
        } else {
          const back = await startProxy(kind, appPort);
          const front = await startProxy(kind, back.port);
          targets[p] = {
            url: `http://127.0.0.1:${front.port}`,
            pids: () => ({ proxy1: front.pid, proxy2: back.pid, app: appPid }),
          };
        }
      } catch (err) {
        log(`    ${p} FAILED: ${firstLine(err)}`);
        fillAll(p, `${p} anchor failed: ${firstLine(err)}`);
      }
    }

    // The two sidecars, each in its own process.
    if (paths.includes('sidecar')) {
      try {
        const { args, how } = await sidecarCommand(log);
        setup.sidecar = how;
        const { inProc, outProc, web, adminOut } = await startSidecarPair({
          dir,
          args,
          service: 'app',
          target: `http://127.0.0.1:${appPort}`,
          procs,
          ...(o.profileDir ? { profileDir: o.profileDir } : {}),
        });
        targets.sidecar = {
          url: `http://127.0.0.1:${web}`,
          pids: () => ({ outbound: outProc.pid, inbound: inProc.pid, app: appPid }),
          metricsUrl: `http://127.0.0.1:${adminOut}/metrics`,
        };
        // Idle RSS: ready, connected to each other, no request yet.
        await sleep(o.rssIdleMs ?? 1_000);
        sidecarPids = { outbound: outProc.pid, inbound: inProc.pid };
        const settleMs = o.rssSettleMs ?? 0;
        const idle = (pid: number): RssReport => {
          const m = memoryOf(pid);
          const none = { anonMb: null, fileMb: null };
          return {
            idleMb: m.rssMb,
            afterLoadMb: null,
            peakMb: null,
            settledMb: null,
            settleMs,
            parts: { idle: partsOf(m), afterLoad: none, settled: none },
          };
        };
        rss = { outbound: idle(outProc.pid), inbound: idle(inProc.pid) };
      } catch (err) {
        log(`    sidecars FAILED: ${firstLine(err)}`);
        fillAll('sidecar', `sidecars failed to start: ${firstLine(err)}`);
      }
    }

    // Three endpoints (issue 15): one outbound sidecar whose upstream lists three inbound sidecars, on 127.0.0.1,
    // 127.0.0.2 and 127.0.0.3 at one port, each its own process, all in front of the same app.
    if (paths.includes('sidecar3')) {
      try {
        const { args } = await sidecarCommand(log);
        const [geminio, web, adminOut, ...adminsIn] = await Promise.all(
          [1, 2, 3, 4, 5, 6].map(() => freePort()),
        );
        const hosts = ['127.0.0.1', '127.0.0.2', '127.0.0.3'];
        const log_ = { level: 'warn', format: 'json' };
        const start = (side: string, config: unknown): Proc => {
          const file = join(dir, `${side}.json`);
          writeFileSync(file, JSON.stringify(config, null, 2));
          const p = new Proc(side, process.execPath, [...args, 'run', '--config', file], sidecarEnv());
          procs.push(p);
          return p;
        };
        const ins: Proc[] = [];
        for (const [i, host] of hosts.entries()) {
          const p = start(`inbound${i + 1}`, {
            name: `bench-inbound${i + 1}`,
            log: log_,
            admin: { listen: `127.0.0.1:${adminsIn[i]}` },
            inbound: { listen: `${host}:${geminio}` },
            services: { app: { target: `http://127.0.0.1:${appPort}` } },
          });
          await waitHttp(`http://127.0.0.1:${adminsIn[i]}/readyz`, p);
          ins.push(p);
        }
        const out = start('outbound3', {
          name: 'bench-outbound3',
          log: log_,
          admin: { listen: `127.0.0.1:${adminOut}` },
          upstreams: { in: { endpoints: hosts.map((h) => `${h}:${geminio}`), balancing: { minReady: 3 } } },
          outbound: { http: [{ name: 'web', listen: `127.0.0.1:${web}`, upstream: 'in', service: 'app' }] },
        });
        await waitHttp(`http://127.0.0.1:${adminOut}/readyz`, out);
        targets.sidecar3 = {
          url: `http://127.0.0.1:${web}`,
          pids: () => ({
            outbound: out.pid,
            inbound1: ins[0]!.pid,
            inbound2: ins[1]!.pid,
            inbound3: ins[2]!.pid,
            app: appPid,
          }),
          metricsUrl: `http://127.0.0.1:${adminOut}/metrics`,
        };
      } catch (err) {
        log(`    sidecar3 FAILED: ${firstLine(err)}`);
        fillAll('sidecar3', `three-endpoint sidecars failed to start: ${firstLine(err)}`);
      }
    }

    // Measurements: per concurrency, the paths one after the other (the sidecar last, so its RSS settles after
    // the last load of the run).
    const rank = (p: PathName) => (p === 'sidecar' ? 2 : p === 'sidecar3' ? 1 : 0);
    const order = [...paths].sort((a, b) => rank(a) - rank(b));
    for (const c of o.concurrencies) {
      for (const path of order) {
        const target = targets[path];
        if (!target) continue;
        log(`  http  ${path} concurrency ${c}`);
        const opened0 = target.metricsUrl ? await streamsOpened(target.metricsUrl) : null;
        const r = await measure(target.url, c, timing, target.pids());
        if (opened0 !== null && target.metricsUrl) {
          const opened1 = await streamsOpened(target.metricsUrl);
          if (opened1 !== null) r.streamsOpened = opened1 - opened0;
        }
        results[path][c] = r;
        if (path === 'sidecar' && rss && sidecarPids) {
          lastSidecarLoad = performance.now();
          for (const side of ['outbound', 'inbound'] as const) {
            const m = memoryOf(sidecarPids[side]);
            rss[side].afterLoadMb = m.rssMb;
            rss[side].peakMb = m.peakMb;
            rss[side].parts.afterLoad = partsOf(m);
          }
        }
      }
    }
    if (rss && sidecarPids && lastSidecarLoad > 0 && (o.rssSettleMs ?? 0) > 0) {
      const wait = (o.rssSettleMs ?? 0) - (performance.now() - lastSidecarLoad);
      log(`  rss   waiting ${Math.round(Math.max(0, wait) / 1000)} s after the sidecars' last load`);
      if (wait > 0) await sleep(wait);
      for (const side of ['outbound', 'inbound'] as const) {
        const m = memoryOf(sidecarPids[side]);
        rss[side].settledMb = m.rssMb;
        rss[side].parts.settled = partsOf(m);
      }
    }
  } catch (err) {
    log(`    sidecar rows FAILED: ${firstLine(err)}`);
    for (const p of paths) fillAll(p, `failed: ${firstLine(err)}`);
  } finally {
    // Sidecars exit on SIGTERM (graceful, writes --cpu-prof files); nginx's fast shutdown is SIGTERM too.
    await Promise.all([...procs.map((p) => p.stop('SIGTERM', 10_000)), ...children.map((c) => c.stop())]);
    await app?.stop();
    rmSync(dir, { recursive: true, force: true });
  }
  for (const p of paths) fillAll(p, 'not measured');
  const out: SidecarHttpResults = { concurrencies: o.concurrencies, results, setup };
  if (rss) out.rss = rss;
  return out;
}

/** geminio_streams_opened_total of a sidecar (its admin /metrics), or null. */
async function streamsOpened(url: string): Promise<number | null> {
  try {
    const text = await (await fetch(url, { signal: AbortSignal.timeout(2_000) })).text();
    let sum = 0;
    for (const line of text.split('\n')) {
      if (line.startsWith('geminio_streams_opened_total'))
        sum += Number(line.slice(line.lastIndexOf(' ') + 1));
    }
    return sum;
  } catch {
    return null;
  }
}

/** One load-generator run; the servers' CPU time is sampled at the start and the end of its window. */
function measure(
  url: string,
  concurrency: number,
  timing: Timing,
  pids: Record<string, number>,
): Promise<HttpResult> {
  return measureLoad([...tsxArgs('http-load.ts'), JSON.stringify({ url, concurrency, ...timing })], pids);
}

/**
 * Runs a load generator (node with these arguments) that prints {"event":"window"} when its window starts and then
 * its result line (count, seconds, perSec, p50Us ... cpuPct, cpuUs, and optionally mbPerSec); samples the CPU time
 * of `pids` and of the whole machine at the start and the end of the window.
 */
export async function measureLoad(
  nodeArgs: string[],
  pids: Record<string, number>,
  window?: { start: (load: JsonChild) => Promise<void> },
): Promise<HttpResult> {
  const load = new JsonChild(process.execPath, nodeArgs);
  try {
    const first = await load.next(60_000);
    if (first.error) throw new Error(first.error);
    await window?.start(load);
    const waited = { ...pids, ...(load.child.pid ? { load: load.child.pid } : {}) };
    const wait0 = Object.fromEntries(Object.entries(waited).map(([k, pid]) => [k, schedSeconds(pid)]));
    const io0 = Object.fromEntries(Object.entries(waited).map(([k, pid]) => [k, ioCounts(pid)]));
    const soft0 = ksoftirqdSeconds();
    const idle0 = cpuidleTotals();
    const before = Object.fromEntries(Object.entries(pids).map(([k, pid]) => [k, cpuSeconds(pid)]));
    const machine0 = machineJiffies();
    const t0 = performance.now();
    const sampler = process.env.BENCH_HTTP_STATES ? sampleStates(Object.values(waited)) : undefined;
    const r = await load.next(60_000);
    const runnable = sampler?.stop();
    const secs = (performance.now() - t0) / 1000;
    const machine1 = machineJiffies();
    const soft1 = ksoftirqdSeconds();
    const io1 = Object.fromEntries(Object.entries(waited).map(([k, pid]) => [k, ioCounts(pid)]));
    const idle1 = cpuidleTotals();
    const runWaitPct: Record<string, number> = {};
    for (const [k, pid] of Object.entries(waited)) {
      const a = wait0[k];
      // the load generator has exited by now only after its result line, so its schedstat is still there
      const b = schedSeconds(pid);
      if (a && b) runWaitPct[k] = Math.round((100 * (b.wait - a.wait)) / secs);
    }
    if (r.error) throw new Error(r.error);
    const perRequest: NonNullable<HttpResult['perRequest']> = {};
    const served = Number(r.perSec) * secs;
    for (const k of Object.keys(waited)) {
      const a = io0[k];
      const b = io1[k];
      if (!a || !b || !(served > 0)) continue;
      const per = (f: keyof typeof a) => Math.round((100 * (b[f] - a[f])) / served) / 100;
      perRequest[k] = {
        reads: per('reads'),
        writes: per('writes'),
        sleeps: per('sleeps'),
        preempted: per('preempted'),
      };
    }
    const cpu: Record<string, number> = { load: Number(r.cpuPct) };
    // µs of CPU per request: the load generator's from its own window and count; each server's from its CPU
    // time between the orchestrator's two samples and the requests completed at the measured rate meanwhile.
    const perReq = (us: number, requests: number) => Math.round((10 * us) / requests) / 10;
    const cpuUsPerReq: Record<string, number> = {};
    if (Number(r.count) > 0) cpuUsPerReq.load = perReq(Number(r.cpuUs), Number(r.count));
    for (const [k, pid] of Object.entries(pids)) {
      const a = before[k];
      const b = cpuSeconds(pid);
      if (a === null || a === undefined || b === null) continue;
      cpu[k] = Math.round((100 * (b - a)) / secs);
      if (Number(r.perSec) > 0) cpuUsPerReq[k] = perReq((b - a) * 1e6, Number(r.perSec) * secs);
    }
    const machineCpuPct =
      machine0 && machine1 && machine1.total > machine0.total
        ? Math.round((100 * (machine1.busy - machine0.busy)) / (machine1.total - machine0.total))
        : undefined;
    let machine: HttpResult['machine'];
    if (machine0 && machine1 && machine1.total > machine0.total) {
      const span = machine1.total - machine0.total;
      const pct = (k: keyof MachineJiffies['parts']) =>
        Math.round((1000 * (machine1.parts[k] - machine0.parts[k])) / span) / 10;
      machine = {
        user: pct('user'),
        system: pct('system'),
        softirq: pct('softirq'),
        irq: pct('irq'),
        steal: pct('steal'),
        idle: pct('idle'),
      };
    }
    return {
      ...(machineCpuPct !== undefined ? { machineCpuPct } : {}),
      ...(machine ? { machine } : {}),
      ksoftirqdPct: Math.round((1000 * (soft1 - soft0)) / secs) / 10,
      ...(idle0 && idle1 && idle1.entries > idle0.entries
        ? {
            idleEntries: {
              perSec: Math.round((idle1.entries - idle0.entries) / secs),
              meanUs: Math.round((idle1.us - idle0.us) / (idle1.entries - idle0.entries)),
            },
          }
        : {}),
      runWaitPct,
      perRequest,
      ...(runnable ? { runnable } : {}),
      perSec: Number(r.perSec),
      p50Us: r.p50Us === null ? null : Number(r.p50Us),
      p90Us: r.p90Us === null ? null : Number(r.p90Us),
      p99Us: r.p99Us === null ? null : Number(r.p99Us),
      maxUs: r.maxUs === null ? null : Number(r.maxUs),
      meanUs: r.meanUs === null ? null : Number(r.meanUs),
      count: Number(r.count),
      ...(r.mbPerSec !== undefined ? { mbPerSec: Number(r.mbPerSec) } : {}),
      cpu,
      cpuUsPerReq,
    };
  } catch (err) {
    process.stderr.write(`    FAILED: ${firstLine(err)}\n`);
    return failed(`failed: ${firstLine(err)}`);
  } finally {
    await load.stop();
  }
}

/** "CPU % of one core in the window: load 98, outbound 95, inbound 80, app 40 (µs/request: ...)" */
export function cpuNote(r: HttpResult): string | undefined {
  const parts = Object.entries(r.cpu).map(([k, v]) => `${k} ${v}`);
  if (parts.length === 0) return undefined;
  const us = Object.entries(r.cpuUsPerReq).map(([k, v]) => `${k} ${v}`);
  const perReq = us.length > 0 ? ` (µs per request: ${us.join(', ')})` : '';
  const waits = Object.entries(r.runWaitPct ?? {}).map(([k, v]) => `${k} ${v}`);
  const wait =
    waits.length > 0 ? `; runnable but waiting for a core, % of one core: ${waits.join(', ')}` : '';
  const sleeps = Object.entries(r.perRequest ?? {}).map(([k, v]) => `${k} ${v.sleeps}`);
  const slept = sleeps.length > 0 ? `; event-loop sleeps per request: ${sleeps.join(', ')}` : '';
  const m = r.machine;
  const machine = m
    ? `; whole machine, % of all cores: user ${m.user}, system ${m.system}, softirq ${m.softirq}, irq ${m.irq}, ` +
      `steal ${m.steal}, idle ${m.idle}; ksoftirqd ${r.ksoftirqdPct ?? '-'} % of one core` +
      (r.idleEntries ? `; cores went idle ${r.idleEntries.perSec}/s for ${r.idleEntries.meanUs} µs each` : '')
    : '';
  return `CPU % of one core in the window: ${parts.join(', ')}${perReq}${wait}${slept}${machine}`;
}

/** The CPU of all the path's processes in the window (load generator included), in % of all cores. */
export function pathCpuPct(r: HttpResult, cores: number): number | null {
  const values = Object.values(r.cpu);
  if (values.length === 0 || cores <= 0) return null;
  return values.reduce((a, b) => a + b, 0) / cores;
}

// On its own: print the raw results (and the sidecars' profiles with --profile).
if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const quick = process.argv.includes('--quick');
  const timing: Timing = quick
    ? { warmupMs: 1_000, durationMs: 1_000 }
    : { warmupMs: 3_000, durationMs: 3_000 };
  const arg = (flag: string) => {
    const i = process.argv.indexOf(flag);
    return i >= 0 ? process.argv[i + 1] : undefined;
  };
  if (arg('--warmup')) timing.warmupMs = Number(arg('--warmup'));
  const rssSettleMs = Number(arg('--rss-settle') ?? 0);
  const rssIdleMs = Number(arg('--rss-idle') ?? 1_000);
  const profile = process.argv.includes('--profile');
  const profileDir = join(benchDir, 'results', 'profiles', 'sidecar-http');
  const concurrencies = (arg('--concurrency') ?? (profile ? '1' : '1,64')).split(',').map(Number);
  const paths = (arg('--paths') ?? (profile ? 'sidecar' : PATHS.join(','))).split(',') as PathName[];
  const unknown = paths.filter((p) => !(PATHS as readonly string[]).includes(p));
  if (unknown.length > 0) {
    console.error(`unknown path(s) ${unknown.join(', ')}; paths: ${PATHS.join(', ')}`);
    process.exit(2);
  }
  const out = await runSidecarHttp(timing, {
    concurrencies,
    paths,
    rssSettleMs,
    rssIdleMs,
    ...(profile ? { profileDir } : {}),
  });
  console.log(JSON.stringify(out, null, 2));
  if (profile) {
    writeSidecarSummary(
      profileDir,
      `CPU profiles of the sidecars, HTTP GET, concurrency ${concurrencies.join(',')}`,
    );
  }
  process.exit(0);
}
