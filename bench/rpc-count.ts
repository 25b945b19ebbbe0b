/**
 * Counts per call of the two-process SDK rows (issue 14, round 4): what one RPC (256 B -> 4 KiB) or one acked
 * publish (5 B) costs the client (this process) and the server (bench/server.ts in another process), in figures
 * that move little with the machine's load:
 *
 *   npx tsx bench/rpc-count.ts [--case rpc|publish] [--inflight 64] [--calls 20000] [--warmup 20000]
 *                              [--perf] [--strace]
 *
 * After `warmup` calls it runs `calls` more (with `inflight` loops) and reports, per call and per process: CPU µs
 * (user / system, from /proc/PID/stat; this one moves with the load), heap bytes allocated and bytes promoted
 * to the old generation by scavenges (v8.GCProfiler: the client here, the server through bench/heap-window.mjs), socket writes and bytes written (the client's net.Socket
 * writes). `--perf` adds a pass under `perf stat -e instructions:u` on both processes (instructions per call),
 * `--strace` a pass under `strace -c -f` (syscalls per call; strace slows the process, so that pass is separate).
 * Results are one JSON line on stdout, reported, never asserted.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GCProfiler, getHeapStatistics } from 'node:v8';
import { dial } from '../sdk/index.js';
import { JsonChild, REQUEST_SIZE, RESPONSE_SIZE, repoDir, sleep, tsxArgs } from './lib.js';

const argv = process.argv.slice(2);
const opt = (name: string, dflt: string): string => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 && argv[i + 1] ? argv[i + 1]! : dflt;
};
const CASE = opt('case', 'rpc');
const INFLIGHT = Number(opt('inflight', '64'));
const CALLS = Number(opt('calls', '20000'));
const WARMUP = Number(opt('warmup', '20000'));
const dir = mkdtempSync(join(tmpdir(), 'rpc-count-'));
const heapOut = join(dir, 'heap.jsonl');

let socketWrites = 0;
let socketBytes = 0;
for (const m of ['_writeGeneric', '_writev'] as const) {
  const proto = net.Socket.prototype as unknown as Record<string, (...a: unknown[]) => unknown>;
  const orig = proto[m]!;
  proto[m] = function (this: net.Socket, ...args: unknown[]) {
    socketWrites++;
    if (m === '_writev') {
      for (const c of args[0] as Array<{ chunk: Buffer }>) socketBytes += c.chunk.length;
    } else socketBytes += (args[1] as Buffer).length;
    return orig.apply(this, args);
  };
}

const CLK_TCK = 100;
function cpu(pid: number): { user: number; sys: number } {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const rest = f.slice(f.lastIndexOf(')') + 2).split(' ');
  return { user: Number(rest[11]), sys: Number(rest[12]) };
}

/** What a scavenge moved into the old generation: the old space's growth across it. */
function oldSpaceGrowth(gc: {
  beforeGC: { heapSpaceStatistics: Array<{ spaceName: string; spaceUsedSize: number }> };
  afterGC: { heapSpaceStatistics: Array<{ spaceName: string; spaceUsedSize: number }> };
}): number {
  const used = (s: Array<{ spaceName: string; spaceUsedSize: number }>) =>
    s.find((x) => x.spaceName === 'old_space')?.spaceUsedSize ?? 0;
  return used(gc.afterGC.heapSpaceStatistics) - used(gc.beforeGC.heapSpaceStatistics);
}

function heapWindow(): () => { allocated: number; gcs: number; gcUs: number; promoted: number } {
  const profiler = new GCProfiler();
  profiler.start();
  const startUsed = getHeapStatistics().used_heap_size;
  return () => {
    const { statistics } = profiler.stop();
    let allocated = 0;
    let after = startUsed;
    let gcUs = 0;
    let promoted = 0;
    if (process.env.GC_TYPES)
      console.error(statistics.map((g) => `${g.gcType}:${Math.round(g.cost)}`).join(' '));
    for (const gc of statistics) {
      allocated += gc.beforeGC.heapStatistics.usedHeapSize - after;
      after = gc.afterGC.heapStatistics.usedHeapSize;
      gcUs += gc.cost;
      if (gc.gcType === 'Scavenge') promoted += oldSpaceGrowth(gc);
    }
    return {
      allocated: allocated + getHeapStatistics().used_heap_size - after,
      gcs: statistics.length,
      gcUs,
      promoted,
    };
  };
}

async function attach(tool: 'perf' | 'strace', pid: number): Promise<() => Promise<string>> {
  const out = join(dir, `${tool}-${pid}.txt`);
  const args =
    tool === 'perf'
      ? ['stat', '-e', 'instructions:u', '-x', ',', '-o', out, '-p', String(pid)]
      : ['-c', '-f', '-o', out, '-p', String(pid)];
  const p = spawn(tool, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  p.stderr!.on('data', (c: Buffer) => (err += c.toString()));
  if (tool === 'strace') for (let i = 0; i < 100 && !err.includes('attached'); i++) await sleep(50);
  await sleep(300);
  return async () => {
    const done = new Promise((r) => p.once('exit', r));
    p.kill('SIGINT');
    await done;
    return readFileSync(out, 'utf8');
  };
}

function instructions(text: string): number {
  const line = text.split('\n').find((l) => l.includes('instructions'));
  const n = line ? Number(line.split(',')[0]) : Number.NaN;
  return n; // NaN when the VM exposes no PMU ("<not supported>")
}

function syscalls(text: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const line of text.split('\n')) {
    const m = /^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)\s*$/.exec(line);
    if (m && m[2] !== 'total') out[m[2]!] = Number(m[1]);
  }
  return out;
}

async function main(): Promise<void> {
  const server = new JsonChild(
    process.execPath,
    [...tsxArgs('server.ts', ['--import', join(repoDir, 'bench', 'heap-window.mjs')]), 'geminio'],
    { env: { HEAP_OUT: heapOut } },
  );
  const ready = await server.next(30_000);
  const spid = server.child.pid!;
  const end = await dial(
    { host: ready.host, port: ready.port },
    CASE === 'rpc' ? { waitRemoteRpcs: ['echo'] } : {},
  );
  const request = Buffer.alloc(CASE === 'rpc' ? REQUEST_SIZE : 5, 1);
  const op =
    CASE === 'rpc'
      ? async () => {
          const r = await end.call('echo', request);
          if (r.data.length !== RESPONSE_SIZE) throw new Error(`response of ${r.data.length} bytes`);
        }
      : () => end.publish(request);
  const run = async (n: number) => {
    let left = n;
    await Promise.all(
      Array.from({ length: INFLIGHT }, async () => {
        while (left > 0) {
          left--;
          await op();
        }
      }),
    );
  };
  await run(WARMUP);
  const result: Record<string, unknown> = { case: CASE, inflight: INFLIGHT, calls: CALLS };

  // Pass 1: CPU, heap, writes.
  const c0 = cpu(process.pid);
  const s0 = cpu(spid);
  process.kill(spid, 'SIGUSR2');
  await sleep(100);
  const stopHeap = heapWindow();
  socketWrites = 0;
  socketBytes = 0;
  const t0 = process.hrtime.bigint();
  await run(CALLS);
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const clientHeap = stopHeap();
  const writes = socketWrites;
  const bytes = socketBytes;
  const c1 = cpu(process.pid);
  const s1 = cpu(spid);
  process.kill(spid, 'SIGUSR2');
  await sleep(300);
  const serverHeap = JSON.parse(readFileSync(heapOut, 'utf8').trim().split('\n').pop()!);
  const perCallUs = (ticks: number) => Math.round(((ticks / CLK_TCK) * 1e6) / CALLS);
  /** CPU, heap and GC per call of one process. */
  const perCall = (
    before: { user: number; sys: number },
    after: { user: number; sys: number },
    heap: { allocated: number; gcs: number; gcUs: number; promoted: number },
  ) => ({
    userUs: perCallUs(after.user - before.user),
    sysUs: perCallUs(after.sys - before.sys),
    heapBytes: Math.round(heap.allocated / CALLS),
    gcsPer1000: +((heap.gcs * 1000) / CALLS).toFixed(2),
    gcUs: +(heap.gcUs / CALLS).toFixed(2),
    promotedBytes: Math.round(heap.promoted / CALLS),
  });
  result.callsPerSec = Math.round(CALLS / seconds);
  result.client = {
    ...perCall(c0, c1, clientHeap),
    writesPerCall: +(writes / CALLS).toFixed(3),
    bytesPerWrite: Math.round(bytes / writes),
  };
  result.server = perCall(s0, s1, {
    allocated: serverHeap.allocatedBytes,
    gcs: serverHeap.gcs,
    gcUs: serverHeap.gcUs,
    promoted: serverHeap.promotedBytes,
  });

  for (const tool of ['perf', 'strace'] as const) {
    if (!argv.includes(`--${tool}`)) continue;
    const stops = [await attach(tool, process.pid), await attach(tool, spid)];
    await run(CALLS);
    const [ct, st] = [await stops[0]!(), await stops[1]!()];
    if (tool === 'perf') {
      const per = (t: string) => {
        const n = instructions(t);
        return Number.isNaN(n) ? 'not supported (no PMU on this VM)' : Math.round(n / CALLS);
      };
      (result.client as Record<string, unknown>).instructionsPerCall = per(ct);
      (result.server as Record<string, unknown>).instructionsPerCall = per(st);
    } else {
      const per = (s: Record<string, number>) =>
        Object.fromEntries(
          Object.entries(s)
            .filter(([k, n]) => n / CALLS >= 0.01 && k !== 'ptrace' && k !== 'wait4')
            .map(([k, n]) => [k, +(n / CALLS).toFixed(3)]),
        );
      (result.client as Record<string, unknown>).syscallsPerCall = per(syscalls(ct));
      (result.server as Record<string, unknown>).syscallsPerCall = per(syscalls(st));
    }
  }
  end.destroy();
  await server.stop();
  rmSync(dir, { recursive: true, force: true });
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
