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
 *                         [--profile]
 *
 * prints the raw results; `--profile` runs both sidecars under `node --cpu-prof` (bench/results/profiles/grpc/
 * {outbound,inbound}/) and prints their top self-time functions. Reported, never asserted.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { profilesIn, summarize } from './cpuprofile.js';
import { firstLine } from './debian.js';
import { benchDir, JsonChild, type Timing, tsxArgs } from './lib.js';
import { type HttpResult, measureLoad, type Proc, sidecarCommand, startSidecarPair } from './sidecar-http.js';

export type GrpcPath = 'direct' | 'sidecar';

/** One path: unary results by concurrency, and the streaming call (one call at a time). */
export interface GrpcPathResults {
  unary: Record<number, HttpResult>;
  stream?: HttpResult;
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
  log?: (msg: string) => void;
}

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
    cpuUsPerReq: {},
    note,
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
        out[p].unary[c] = await measureLoad(load(t.port, 'unary', c), t.pids());
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
  const timing: Timing = quick ? { warmupMs: 1_000, durationMs: 1_000 } : { warmupMs: 3_000, durationMs: 3_000 };
  if (arg('--warmup')) timing.warmupMs = Number(arg('--warmup'));
  const profile = process.argv.includes('--profile');
  const profileDir = join(benchDir, 'results', 'profiles', 'grpc');
  const concurrencies = (arg('--concurrency') ?? '1,64').split(',').map(Number);
  const paths = (arg('--paths') ?? (profile ? 'sidecar' : 'direct,sidecar')).split(',') as GrpcPath[];
  const r = await runGrpcBench(timing, {
    concurrencies,
    paths,
    stream: !process.argv.includes('--no-stream') && !profile,
    ...(profile ? { profileDir } : {}),
  });
  console.log(JSON.stringify(r, null, 2));
  if (profile) {
    const report = [`# CPU profiles of the sidecars, gRPC unary, concurrency ${concurrencies.join(',')}`, ''];
    for (const side of ['outbound', 'inbound']) {
      const files = profilesIn(join(profileDir, side));
      if (files[0]) report.push(`## ${side} sidecar`, '', ...summarize(files[0], 25), '');
    }
    writeFileSync(join(profileDir, 'summary.md'), `${report.join('\n')}\n`);
    console.log(report.join('\n'));
  }
  process.exit(0);
}
