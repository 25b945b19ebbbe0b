/**
 * Syscalls per request of each proxy process at one connection (issue 14, round 3): a count that does not depend
 * on the machine's load, beside the CPU figures that do.
 *
 *   npx tsx bench/syscalls.ts [--requests 2000] [--warmup 2000] [--paths minimal2,sidecar]
 *   npx tsx bench/syscalls.ts --instructions [--connections 1] [--requests 2000] [--warmup 5000] [--rounds 3]
 *
 * Starts the app (bench/http-app.ts), the minimal Node proxy's two-hop chain (bench/http-proxy.ts) and the two
 * sidecars (the bundle in BENCH_SIDECAR_BUNDLE, or one built from the current sources, with the configs of
 * bench/sidecar-http.ts), sends `warmup` sequential GETs through a path, then attaches `strace -c -f` to each
 * of its proxy processes, sends `requests` more (one at a time, one keep-alive connection, as
 * bench/http-load.ts at concurrency 1), detaches, and prints each process's syscalls divided by the requests
 * (one JSON line per path). Needs strace (and ptrace permission); results are reported, never asserted.
 *
 * --instructions: instead, every proxy process runs under valgrind's callgrind (this VM exposes no hardware
 * counters to `perf stat`; needs the Debian package valgrind) with V8 single-threaded on a predictable GC
 * schedule, counting only in the measured windows; for each process in turn the counters are zeroed
 * (`callgrind_control -z`), `requests` requests are sent (over `connections` keep-alive connections, each
 * sequential) and the counters dumped: user-space instructions executed per request, main thread (JavaScript,
 * V8's compiler and GC) and the other threads (libuv's pool, the inspector). A first window per process is not
 * reported (the first counted window of a run is ~2.5x the next ones), then `rounds` windows per process. The count
 * does not depend on the machine's load, but each process runs ~50x slower, so timing-driven behaviour (how many
 * requests share a loop turn at several connections, timers) may differ from a run at full speed; kernel time
 * (the syscalls) is not in it.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Pool } from 'undici';
import { freePort, JsonChild, repoDir, sidecarEnv, sleep, tsxArgs } from './lib.js';

const argv = process.argv.slice(2);
const opt = (name: string, dflt: string): string => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 && argv[i + 1] ? argv[i + 1]! : dflt;
};
const REQUESTS = Number(opt('requests', '2000'));
const WARMUP = Number(opt('warmup', '2000'));
const PATHS = opt('paths', 'minimal2,sidecar').split(',');
/** --heap: every proxy preloads bench/heap-per-request.mjs, and a third pass counts heap bytes per request. */
const HEAP = argv.includes('--heap');
const preload = HEAP ? ['--import', join(repoDir, 'bench', 'heap-per-request.mjs')] : [];
/** --instructions: the proxies under callgrind; instructions per request instead of syscalls. */
const INSTRUCTIONS = argv.includes('--instructions');
const CONNECTIONS = Number(opt('connections', '1'));
const ROUNDS = Number(opt('rounds', '2'));
const STARTUP_MS = INSTRUCTIONS ? 600_000 : 30_000;
if (INSTRUCTIONS && spawnSync('valgrind', ['--version']).status !== 0) {
  console.error('--instructions needs valgrind (Debian: apt-get install valgrind)');
  process.exit(2);
}
/** Each proxy process's stderr (the preload's report). */
const stderrOf = new Map<number, string>();
const collect = (c: ChildProcess) =>
  c.stderr?.on('data', (d: Buffer) => stderrOf.set(c.pid!, (stderrOf.get(c.pid!) ?? '') + d.toString()));

async function drive(url: string, n: number, connections = 1): Promise<void> {
  const pool = new Pool(url, {
    connections,
    pipelining: 1,
    keepAliveTimeout: 60_000,
    headersTimeout: 600_000,
    bodyTimeout: 600_000,
  });
  let left = n;
  const one = async () => {
    while (left-- > 0) {
      const { statusCode, body } = await pool.request({ path: '/', method: 'GET' });
      await body.arrayBuffer();
      if (statusCode !== 200) throw new Error(`GET ${url}: ${statusCode}`);
    }
  };
  await Promise.all(Array.from({ length: connections }, one));
  await pool.close();
}

/** The command (and its leading arguments) that runs a proxy process: node, or node under callgrind. */
function runner(nodeArgs: string[]): [string, string[]] {
  if (!INSTRUCTIONS) return [process.execPath, nodeArgs];
  return [
    'valgrind',
    [
      '--tool=callgrind',
      '--separate-threads=yes',
      // Counting only in the measured window (callgrind_control -i on): the warm-up runs ~10x faster.
      '--instr-atstart=no',
      `--callgrind-out-file=${join(dir, 'cg.%p')}`,
      process.execPath,
      // V8's compiler and GC on the main thread, in an order and on a schedule set by the work done (not by the
      // threads' timing, nor by the allocation rate per second, which the ~50x slowdown would change).
      '--single-threaded',
      '--predictable-gc-schedule',
      ...nodeArgs,
    ],
  ];
}

/** Callgrind's instruction counts of pid while fn runs, per thread (01 is the main thread). */
let dumps = 0;
async function instructions(pid: number, fn: () => Promise<void>): Promise<{ main: number; other: number }> {
  const control = (args: string[]) =>
    new Promise<void>((res, rej) =>
      spawn('callgrind_control', [...args, String(pid)], { stdio: 'ignore' }).once('exit', (code) =>
        code === 0 ? res() : rej(new Error(`callgrind_control ${args.join(' ')}: exit ${code}`)),
      ),
    );
  await control(['-i', 'on']);
  await control(['-z']);
  await fn();
  const tag = `w${++dumps}`;
  await control([`--dump=${tag}`]);
  await control(['-i', 'off']);
  let main = 0;
  let other = 0;
  for (let i = 0; i < 100; i++) {
    const files = readdirSync(dir).filter((f) => f.startsWith(`cg.${pid}.`));
    const mine = files.filter((f) =>
      readFileSync(join(dir, f), 'utf8').includes(`desc: Trigger: dump ${tag}\n`),
    );
    if (mine.length > 0) {
      await sleep(200);
      for (const f of mine) {
        const text = readFileSync(join(dir, f), 'utf8');
        const n = Number(/^summary: (\d+)/m.exec(text)?.[1] ?? 0);
        if (f.endsWith('-01')) main += n;
        else other += n;
        rmSync(join(dir, f));
      }
      return { main, other };
    }
    await sleep(100);
  }
  throw new Error(`no callgrind dump of ${pid}`);
}

/** strace -c -f on pid while fn runs: syscall name -> calls. */
async function counted(pid: number, fn: () => Promise<void>): Promise<Record<string, number>> {
  const out = join(dir, `strace-${pid}.txt`);
  const st = spawn('strace', ['-c', '-f', '-o', out, '-p', String(pid)], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let err = '';
  st.stderr!.on('data', (c: Buffer) => (err += c.toString()));
  // strace says "Process N attached" per thread on stderr once it holds them.
  for (let i = 0; i < 100 && !err.includes('attached'); i++) await sleep(50);
  await sleep(300);
  await fn();
  const done = new Promise((r) => st.once('exit', r));
  st.kill('SIGINT');
  await done;
  const calls: Record<string, number> = {};
  for (const line of readFileSync(out, 'utf8').split('\n')) {
    const m = /^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)\s*$/.exec(line);
    if (m && m[2] !== 'total') calls[m[2]!] = Number(m[1]);
  }
  return calls;
}

/** Per thread of pid: its name, CPU ns (schedstat), voluntary and involuntary context switches. */
function threadStats(pid: number): Record<string, { comm: string; ns: number; vol: number; inv: number }> {
  const out: Record<string, { comm: string; ns: number; vol: number; inv: number }> = {};
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      const base = `/proc/${pid}/task/${tid}`;
      const ns = Number(readFileSync(`${base}/schedstat`, 'utf8').split(' ')[0]);
      const status = readFileSync(`${base}/status`, 'utf8');
      const vol = Number(/voluntary_ctxt_switches:\s+(\d+)/.exec(status)?.[1] ?? 0);
      const inv = Number(/nonvoluntary_ctxt_switches:\s+(\d+)/.exec(status)?.[1] ?? 0);
      out[tid] = { comm: readFileSync(`${base}/comm`, 'utf8').trim(), ns, vol, inv };
    } catch {
      // the thread ended
    }
  }
  return out;
}

/** Clock ticks per second of /proc/PID/stat's utime and stime (USER_HZ, 100 on Linux). */
const TICK = 100;

/** utime and stime of pid (all its threads), in clock ticks, and its minor page faults. */
function userSys(pid: number): [number, number, number] {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return [Number(f[11]), Number(f[12]), Number(f[7])];
}

const dir = mkdtempSync(join(tmpdir(), 'bench-syscalls-'));
const kids: JsonChild[] = [];
const procs: ChildProcess[] = [];
try {
  const app = new JsonChild(process.execPath, tsxArgs('http-app.ts'));
  kids.push(app);
  const a = (await app.next(30_000)) as { port: number; pid: number };
  const targets: Record<string, { url: string; pids: Record<string, number> }> = {};

  if (PATHS.includes('minimal2')) {
    const proxy = async (target: number) => {
      const c = new JsonChild(
        ...runner([
          ...tsxArgs('http-proxy.ts', preload),
          JSON.stringify({ kind: 'minimal', target: `http://127.0.0.1:${target}`, connections: CONNECTIONS }),
        ]),
      );
      kids.push(c);
      collect(c.child);
      return (await c.next(STARTUP_MS)) as { port: number; pid: number };
    };
    const back = await proxy(a.port);
    const front = await proxy(back.port);
    targets.minimal2 = {
      url: `http://127.0.0.1:${front.port}`,
      pids: { proxy1: front.pid, proxy2: back.pid },
    };
  }
  if (PATHS.includes('sidecar')) {
    let bundle = process.env.BENCH_SIDECAR_BUNDLE;
    if (!bundle) {
      bundle = join(dir, 'sidecar.mjs');
      await new Promise((res, rej) =>
        spawn(process.execPath, ['--import', 'tsx', 'scripts/bundle.ts', bundle!], {
          cwd: repoDir,
          stdio: 'inherit',
        }).once('exit', (code) => (code === 0 ? res(null) : rej(new Error(`bundle: exit ${code}`)))),
      );
    }
    const [geminio, web, adminIn, adminOut] = await Promise.all([
      freePort(),
      freePort(),
      freePort(),
      freePort(),
    ]);
    const log = { level: 'warn', format: 'json' };
    const start = (side: string, config: unknown): ChildProcess => {
      const file = join(dir, `${side}.json`);
      writeFileSync(file, JSON.stringify(config));
      const p = spawn(
        ...runner([
          ...preload,
          ...(process.env.BENCH_SIDECAR_NODE_ARGS ?? '').split(' ').filter(Boolean),
          bundle!,
          'run',
          '--config',
          file,
        ]),
        {
          cwd: repoDir,
          stdio: ['ignore', 'ignore', 'pipe'],
          env: { ...process.env, ...sidecarEnv() },
        },
      );
      procs.push(p);
      collect(p);
      return p;
    };
    const inb = start('inbound', {
      name: 'bench-inbound',
      log,
      admin: { listen: `127.0.0.1:${adminIn}` },
      inbound: { listen: `127.0.0.1:${geminio}` },
      services: { app: { target: `http://127.0.0.1:${a.port}` } },
    });
    await sleep(INSTRUCTIONS ? 15_000 : 1500);
    const outb = start('outbound', {
      name: 'bench-outbound',
      log,
      admin: { listen: `127.0.0.1:${adminOut}` },
      upstreams: { in: { address: `127.0.0.1:${geminio}` } },
      outbound: { http: [{ name: 'web', listen: `127.0.0.1:${web}`, upstream: 'in', service: 'app' }] },
    });
    const url = `http://127.0.0.1:${web}`;
    for (let i = 0; ; i++) {
      try {
        await drive(url, 1);
        break;
      } catch (err) {
        if (i > (INSTRUCTIONS ? 1500 : 100)) throw err;
        await sleep(200);
      }
    }
    targets.sidecar = { url, pids: { outbound: outb.pid!, inbound: inb.pid! } };
  }

  for (const path of PATHS) {
    const t = targets[path];
    if (!t) continue;
    await drive(t.url, WARMUP, CONNECTIONS);
    if (INSTRUCTIONS) {
      // One process counted at a time; each figure is instructions per request, main thread and the others.
      // First a window per process that is not reported: the first counted window of a run was 2.5x the next
      // ones, whichever process it was (a quarter of a window before it was not enough). Then several rounds:
      // figures close to each other say the warm-up was long enough (no JIT work left); a round with a major GC
      // in it is higher.
      for (const pid of Object.values(t.pids))
        await instructions(pid, () => drive(t.url, REQUESTS, CONNECTIONS));
      for (let round = 1; round <= ROUNDS; round++) {
        const per: Record<string, { main: number; other: number }> = {};
        for (const [name, pid] of Object.entries(t.pids)) {
          const n = await instructions(pid, () => drive(t.url, REQUESTS, CONNECTIONS));
          per[name] = { main: Math.round(n.main / REQUESTS), other: Math.round(n.other / REQUESTS) };
        }
        const line = {
          path,
          round,
          requests: REQUESTS,
          connections: CONNECTIONS,
          instructionsPerRequest: per,
        };
        process.stdout.write(`${JSON.stringify(line)}\n`);
      }
      continue;
    }
    const perProc: Record<string, Record<string, number>> = {};
    // One process traced at a time (strace slows what it traces; the other hops run free).
    for (const [name, pid] of Object.entries(t.pids)) {
      const calls = await counted(pid, () => drive(t.url, REQUESTS));
      const per: Record<string, number> = {};
      let total = 0;
      for (const [k, v] of Object.entries(calls).sort((x, y) => y[1] - x[1])) {
        per[k] = Math.round((v / REQUESTS) * 100) / 100;
        total += v;
      }
      perProc[name] = { total: Math.round((total / REQUESTS) * 100) / 100, ...per };
    }
    // Then an untraced pass: CPU µs and context switches per request of each thread (by thread name).
    const threads: Record<string, Record<string, { cpuUs: number; volCs: number; invCs: number }>> = {};
    const before = Object.fromEntries(Object.entries(t.pids).map(([n, pid]) => [n, threadStats(pid)]));
    const times0 = Object.fromEntries(Object.entries(t.pids).map(([n, pid]) => [n, userSys(pid)]));
    await drive(t.url, REQUESTS);
    const userSysUs: Record<string, { user: number; sys: number; minorFaults: number }> = {};
    for (const [name, pid] of Object.entries(t.pids)) {
      const [u0, s0, f0] = times0[name]!;
      const [u1, s1, f1] = userSys(pid);
      userSysUs[name] = {
        user: Math.round(((u1 - u0) * 1e6) / TICK / REQUESTS),
        sys: Math.round(((s1 - s0) * 1e6) / TICK / REQUESTS),
        minorFaults: Math.round(((f1 - f0) / REQUESTS) * 100) / 100,
      };
    }
    for (const [name, pid] of Object.entries(t.pids)) {
      const b = before[name]!;
      const a = threadStats(pid);
      const per: Record<string, { cpuUs: number; volCs: number; invCs: number }> = {};
      for (const [tid, s1] of Object.entries(a)) {
        const s0 = b[tid] ?? { comm: s1.comm, ns: 0, vol: 0, inv: 0 };
        const key = Number(tid) === pid ? 'main' : s1.comm;
        const cur = per[key] ?? { cpuUs: 0, volCs: 0, invCs: 0 };
        cur.cpuUs += (s1.ns - s0.ns) / 1000 / REQUESTS;
        cur.volCs += (s1.vol - s0.vol) / REQUESTS;
        cur.invCs += (s1.inv - s0.inv) / REQUESTS;
        per[key] = cur;
      }
      for (const v of Object.values(per)) {
        v.cpuUs = Math.round(v.cpuUs * 10) / 10;
        v.volCs = Math.round(v.volCs * 100) / 100;
        v.invCs = Math.round(v.invCs * 100) / 100;
      }
      threads[name] = per;
    }
    const heap: Record<string, unknown> = {};
    if (HEAP) {
      for (const pid of Object.values(t.pids)) process.kill(pid, 'SIGUSR2');
      await sleep(200);
      await drive(t.url, REQUESTS);
      for (const pid of Object.values(t.pids)) process.kill(pid, 'SIGUSR2');
      await sleep(500);
      for (const [name, pid] of Object.entries(t.pids)) {
        const lines = (stderrOf.get(pid) ?? '').split('\n').filter((l) => l.startsWith('{"heapPerReqBytes"'));
        heap[name] = lines.length ? JSON.parse(lines[lines.length - 1]!) : null;
      }
    }
    process.stdout.write(
      `${JSON.stringify({ path, requests: REQUESTS, perRequest: perProc, threads, userSysUs, heap })}\n`,
    );
  }
} finally {
  for (const p of procs) p.kill('SIGTERM');
  await Promise.all(kids.map((k) => k.stop()));
  rmSync(dir, { recursive: true, force: true });
}
