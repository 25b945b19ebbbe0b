/**
 * The sidecar rows (issue 6): HTTP requests/s and latency through the two-sidecar path, against the same app
 * reached directly and through one nginx hop, all in the same run:
 *
 *   sidecar   load generator -> outbound sidecar -> geminio (one TCP connection) -> inbound sidecar -> app
 *   direct    load generator -> app
 *   nginx     load generator -> nginx (reverse proxy, keep-alive upstream) -> app
 *
 * Every box is its own process: the app (bench/http-app.ts, 100-byte JSON answers), the load generator
 * (bench/http-load.ts, undici Pool, one per measurement), the two sidecars (the bundle of sidecar/cli.ts built into
 * bench/results/bin/ from the current sources, or sidecar/cli.ts through tsx if bundling fails) and nginx
 * (`nginx -p DIR -c DIR/nginx.conf -g 'daemon off;'`, installed with apt-get when absent). bench/run.ts calls
 * `runSidecarHttp()`; on its own:
 *
 *   npx tsx bench/sidecar-http.ts [--quick] [--profile] [--concurrency 1,64] [--paths direct,nginx,sidecar]
 *                                 [--warmup MS]
 *
 * prints the raw results; `--profile` runs both sidecars under `node --cpu-prof` (bench/results/profiles/
 * sidecar-http/{outbound,inbound}/) and prints their top self-time functions. Results are reported, never
 * asserted.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { profilesIn, summarize } from './cpuprofile.js';
import { benchDir, JsonChild, repoDir, sleep, type Timing, tsxArgs } from './lib.js';

export type PathName = 'direct' | 'nginx' | 'sidecar';

/** One measurement of one path at one concurrency. */
export interface HttpResult {
  perSec: number | null;
  p50Us: number | null;
  p90Us: number | null;
  p99Us: number | null;
  maxUs: number | null;
  meanUs: number | null;
  count: number | null;
  /** CPU use of each process during the window, in % of one core. */
  cpu: Record<string, number>;
  /** Sidecar path: geminio streams the outbound sidecar opened during the whole measurement (warm-up included). */
  streamsOpened?: number;
  note?: string;
}

export interface SidecarHttpResults {
  concurrencies: number[];
  /** results[path][concurrency] */
  results: Record<PathName, Record<number, HttpResult>>;
  /** How the sidecars ran (bundle or tsx) and nginx's version, for the docs. */
  setup: { sidecar: string; nginx: string | null };
}

export interface SidecarHttpOptions {
  concurrencies: number[];
  paths?: PathName[];
  log?: (msg: string) => void;
  /** Run both sidecars under --cpu-prof into this directory ({outbound,inbound}/). */
  profileDir?: string;
}

const bundlePath = join(benchDir, 'results', 'bin', 'geminio-sidecar.mjs');

function failed(note: string): HttpResult {
  return {
    perSec: null,
    p50Us: null,
    p90Us: null,
    p99Us: null,
    maxUs: null,
    meanUs: null,
    count: null,
    cpu: {},
    note,
  };
}

function firstLine(err: unknown): string {
  return String((err as Error)?.message ?? err).split('\n')[0]!;
}

function run(cmd: string, args: string[], timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) =>
    execFile(
      cmd,
      args,
      { timeout: timeoutMs, env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } },
      (err, stdout, stderr) =>
        err
          ? reject(new Error(`${cmd} ${args.join(' ')}: ${stderr || err.message}`))
          : resolve(`${stdout}${stderr}`),
    ),
  );
}

/** A free loopback port (bound, read, released: the child binds it right after). */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

/** nginx on the PATH or in the usual sbin directories. */
function findNginx(): string | null {
  const dirs = [
    ...(process.env.PATH ?? '').split(':'),
    '/usr/sbin',
    '/usr/local/sbin',
    '/usr/local/nginx/sbin',
  ];
  for (const d of dirs) {
    if (d && existsSync(join(d, 'nginx'))) return join(d, 'nginx');
  }
  return null;
}

/**
 * nginx, installed from Debian packages when absent (apt-get update, then nginx-light, then nginx). Only the
 * bench does this, never a test. Resolves with the binary, or null and why.
 */
export async function ensureNginx(
  log: (msg: string) => void,
): Promise<{ bin: string | null; note?: string }> {
  const found = findNginx();
  if (found) return { bin: found };
  if (process.env.BENCH_NO_INSTALL) return { bin: null, note: 'nginx not installed (BENCH_NO_INSTALL set)' };
  log('nginx not found: apt-get update && apt-get install -y nginx-light (once) ...');
  try {
    await run('apt-get', ['update'], 300_000);
    let lastErr: unknown;
    for (const pkg of ['nginx-light', 'nginx']) {
      try {
        await run('apt-get', ['install', '-y', '--no-install-recommends', pkg], 300_000);
        const bin = findNginx();
        if (bin) return { bin };
      } catch (err) {
        lastErr = err;
      }
    }
    throw lastErr ?? new Error('installed, but no nginx binary found');
  } catch (err) {
    log(`    nginx install FAILED: ${firstLine(err)}`);
    return { bin: null, note: `nginx anchor unavailable: install failed (${firstLine(err)})` };
  }
}

/** A child we stop with a signal (sidecars, nginx); its stderr tail is kept for error messages. */
class Proc {
  readonly child: ChildProcess;
  private tail = '';
  exited = false;
  private readonly gone: Promise<void>;

  constructor(
    readonly name: string,
    cmd: string,
    args: string[],
  ) {
    this.child = spawn(cmd, args, { cwd: repoDir, stdio: ['ignore', 'pipe', 'pipe'] });
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
async function waitHttp(url: string, proc: Proc, timeoutMs = 30_000): Promise<void> {
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

/** utime + stime of a process, in seconds (Linux /proc; 100 ticks per second). */
function cpuSeconds(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return null;
  }
}

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

/** The sidecar command: a bundle of the current sidecar/ sources (production shape), else tsx. */
async function sidecarCommand(log: (msg: string) => void): Promise<{ args: string[]; how: string }> {
  try {
    const { bundle } = (await import('../sidecar/bundle.js')) as { bundle: (out: string) => Promise<string> };
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

function nginxConfig(dir: string, listen: number, appPort: number, keepalive: number): string {
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
    server 127.0.0.1:${appPort};
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

/** Runs the sidecar, direct and nginx measurements; never throws (failures become null values with notes). */
export async function runSidecarHttp(timing: Timing, o: SidecarHttpOptions): Promise<SidecarHttpResults> {
  const log = o.log ?? ((msg: string) => process.stderr.write(`${msg}\n`));
  const paths = o.paths ?? ['direct', 'nginx', 'sidecar'];
  const results = { direct: {}, nginx: {}, sidecar: {} } as SidecarHttpResults['results'];
  const setup: SidecarHttpResults['setup'] = { sidecar: '-', nginx: null };
  const fillAll = (path: PathName, note: string) => {
    for (const c of o.concurrencies) results[path][c] ??= failed(note);
  };
  const dir = mkdtempSync(join(tmpdir(), 'geminio-bench-http-'));
  const procs: Proc[] = [];
  let app: JsonChild | undefined;
  const targets: Partial<
    Record<PathName, { url: string; pids: () => Record<string, number>; metricsUrl?: string }>
  > = {};
  try {
    // The app.
    app = new JsonChild(process.execPath, tsxArgs('http-app.ts'));
    const ready = await app.next(30_000);
    const appPort = Number(ready.port);
    const appPid = Number(ready.pid);
    if (paths.includes('direct')) {
      targets.direct = { url: `http://127.0.0.1:${appPort}`, pids: () => ({ app: appPid }) };
    }

    // nginx.
    if (paths.includes('nginx')) {
      const { bin, note } = await ensureNginx(log);
      if (!bin) fillAll('nginx', note ?? 'nginx unavailable');
      else {
        try {
          setup.nginx = (await run(bin, ['-v'], 10_000)).trim();
          const port = await freePort();
          const ndir = join(dir, 'nginx');
          mkdirSync(ndir, { recursive: true });
          const conf = join(ndir, 'nginx.conf');
          writeFileSync(conf, nginxConfig(ndir, port, appPort, Math.max(...o.concurrencies, 1)));
          const nginx = new Proc('nginx', bin, [
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
          targets.nginx = {
            url: `http://127.0.0.1:${port}`,
            pids: () => ({ nginx: childrenOf(nginx.pid)[0] ?? nginx.pid, app: appPid }),
          };
        } catch (err) {
          log(`    nginx FAILED: ${firstLine(err)}`);
          fillAll('nginx', `nginx anchor failed: ${firstLine(err)}`);
        }
      }
    }

    // The two sidecars, each in its own process.
    if (paths.includes('sidecar')) {
      try {
        const { args, how } = await sidecarCommand(log);
        setup.sidecar = how;
        const [geminio, web, adminIn, adminOut] = await Promise.all([
          freePort(),
          freePort(),
          freePort(),
          freePort(),
        ]);
        const log_ = { level: 'warn', format: 'json' };
        const inbound = {
          name: 'bench-inbound',
          log: log_,
          admin: { listen: `127.0.0.1:${adminIn}` },
          inbound: { listen: `127.0.0.1:${geminio}` },
          services: { app: { target: `http://127.0.0.1:${appPort}` } },
        };
        const outbound = {
          name: 'bench-outbound',
          log: log_,
          admin: { listen: `127.0.0.1:${adminOut}` },
          upstreams: { in: { address: `127.0.0.1:${geminio}` } },
          outbound: { http: [{ name: 'web', listen: `127.0.0.1:${web}`, upstream: 'in', service: 'app' }] },
        };
        const start = (side: 'inbound' | 'outbound', config: unknown): Proc => {
          const file = join(dir, `${side}.json`);
          writeFileSync(file, JSON.stringify(config, null, 2));
          // BENCH_SIDECAR_NODE_ARGS: extra node flags for both sidecars (e.g. --trace-deopt, with BENCH_DEBUG=1).
          const prof = (process.env.BENCH_SIDECAR_NODE_ARGS ?? '').split(' ').filter(Boolean);
          if (o.profileDir) {
            const pdir = join(o.profileDir, side);
            rmSync(pdir, { recursive: true, force: true });
            mkdirSync(pdir, { recursive: true });
            prof.push('--cpu-prof', `--cpu-prof-dir=${pdir}`);
          }
          const p = new Proc(side, process.execPath, [...prof, ...args, 'run', '--config', file]);
          procs.push(p);
          return p;
        };
        const inProc = start('inbound', inbound);
        await waitHttp(`http://127.0.0.1:${adminIn}/readyz`, inProc);
        const outProc = start('outbound', outbound);
        await waitHttp(`http://127.0.0.1:${adminOut}/readyz`, outProc);
        targets.sidecar = {
          url: `http://127.0.0.1:${web}`,
          pids: () => ({ outbound: outProc.pid, inbound: inProc.pid, app: appPid }),
          metricsUrl: `http://127.0.0.1:${adminOut}/metrics`,
        };
      } catch (err) {
        log(`    sidecars FAILED: ${firstLine(err)}`);
        fillAll('sidecar', `sidecars failed to start: ${firstLine(err)}`);
      }
    }

    // Measurements: per concurrency, the three paths one after the other.
    for (const c of o.concurrencies) {
      for (const path of paths) {
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
      }
    }
  } catch (err) {
    log(`    sidecar rows FAILED: ${firstLine(err)}`);
    for (const p of paths) fillAll(p, `failed: ${firstLine(err)}`);
  } finally {
    // Sidecars exit on SIGTERM (graceful, writes --cpu-prof files); nginx's fast shutdown is SIGTERM too.
    await Promise.all(procs.map((p) => p.stop('SIGTERM', 10_000)));
    await app?.stop();
    rmSync(dir, { recursive: true, force: true });
  }
  for (const p of paths) fillAll(p, 'not measured');
  return { concurrencies: o.concurrencies, results, setup };
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
async function measure(
  url: string,
  concurrency: number,
  timing: Timing,
  pids: Record<string, number>,
): Promise<HttpResult> {
  const load = new JsonChild(process.execPath, [
    ...tsxArgs('http-load.ts'),
    JSON.stringify({ url, concurrency, ...timing }),
  ]);
  try {
    const first = await load.next(60_000);
    if (first.error) throw new Error(first.error);
    const before = Object.fromEntries(Object.entries(pids).map(([k, pid]) => [k, cpuSeconds(pid)]));
    const t0 = performance.now();
    const r = await load.next(60_000);
    const secs = (performance.now() - t0) / 1000;
    if (r.error) throw new Error(r.error);
    const cpu: Record<string, number> = { load: Number(r.cpuPct) };
    for (const [k, pid] of Object.entries(pids)) {
      const a = before[k];
      const b = cpuSeconds(pid);
      if (a !== null && a !== undefined && b !== null) cpu[k] = Math.round((100 * (b - a)) / secs);
    }
    return {
      perSec: Number(r.perSec),
      p50Us: Number(r.p50Us),
      p90Us: Number(r.p90Us),
      p99Us: Number(r.p99Us),
      maxUs: Number(r.maxUs),
      meanUs: Number(r.meanUs),
      count: Number(r.count),
      cpu,
    };
  } catch (err) {
    process.stderr.write(`    FAILED: ${firstLine(err)}\n`);
    return failed(`failed: ${firstLine(err)}`);
  } finally {
    await load.stop();
  }
}

/** "CPU (% of a core) load 98, outbound 95, inbound 80, app 40" */
export function cpuNote(r: HttpResult): string | undefined {
  const parts = Object.entries(r.cpu).map(([k, v]) => `${k} ${v}`);
  return parts.length > 0 ? `CPU % of one core in the window: ${parts.join(', ')}` : undefined;
}

// On its own: print the raw results (and the sidecars' profiles with --profile).
if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const quick = process.argv.includes('--quick');
  const timing: Timing = quick
    ? { warmupMs: 300, durationMs: 1_000 }
    : { warmupMs: 1_000, durationMs: 3_000 };
  const arg = (flag: string) => {
    const i = process.argv.indexOf(flag);
    return i >= 0 ? process.argv[i + 1] : undefined;
  };
  if (arg('--warmup')) timing.warmupMs = Number(arg('--warmup'));
  const profile = process.argv.includes('--profile');
  const profileDir = join(benchDir, 'results', 'profiles', 'sidecar-http');
  const concurrencies = (arg('--concurrency') ?? (profile ? '1' : '1,64')).split(',').map(Number);
  const paths = (arg('--paths') ?? (profile ? 'sidecar' : 'direct,nginx,sidecar')).split(',') as PathName[];
  const out = await runSidecarHttp(timing, { concurrencies, paths, ...(profile ? { profileDir } : {}) });
  console.log(JSON.stringify(out, null, 2));
  if (profile) {
    const report = [`# CPU profiles of the sidecars, HTTP GET, concurrency ${concurrencies.join(',')}`, ''];
    for (const side of ['outbound', 'inbound']) {
      const files = profilesIn(join(profileDir, side));
      if (files[0]) report.push(`## ${side} sidecar`, '', ...summarize(files[0], 25), '');
    }
    writeFileSync(join(profileDir, 'summary.md'), `${report.join('\n')}\n`);
    console.log(report.join('\n'));
  }
  process.exit(0);
}
