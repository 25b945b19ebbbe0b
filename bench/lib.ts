/**
 * Shared pieces of the benchmark harness: the fixed-duration measurement loops, child-process helpers (Node
 * children run TypeScript through tsx, the Go anchor is bench program test/interop/geminio-bench) and the
 * result types.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const benchDir: string = dirname(fileURLToPath(import.meta.url));
export const repoDir: string = join(benchDir, '..');

/**
 * The environment the image runs the sidecar with that changes how it uses memory: the Dockerfile's `ENV`
 * variables named MALLOC_* (glibc's allocator reads them at start). Every bench runs its sidecars with them, as the
 * image does. BENCH_SIDECAR_ENV replaces them, for an A/B: "K=V K2=V2", or "none" for none.
 */
export function sidecarEnv(): Record<string, string> {
  const given = process.env.BENCH_SIDECAR_ENV;
  const pairs = (words: string[]) =>
    Object.fromEntries(
      words
        .filter((w) => /^\w+=/.test(w))
        .map((w) => [w.slice(0, w.indexOf('=')), w.slice(w.indexOf('=') + 1)]),
    );
  if (given !== undefined) return given === 'none' ? {} : pairs(given.split(/\s+/));
  const text = readFileSync(join(repoDir, 'Dockerfile'), 'utf8').replace(/\\\n/g, ' ');
  const words = text
    .split('\n')
    .filter((l) => /^ENV\s/.test(l))
    .flatMap((l) => l.slice(4).trim().split(/\s+/));
  return Object.fromEntries(Object.entries(pairs(words)).filter(([k]) => k.startsWith('MALLOC_')));
}
export const interopDir: string = join(repoDir, 'test', 'interop');
export const goBenchBinary: string = join(benchDir, 'results', 'bin', 'geminio-bench');

export const REQUEST_SIZE = 256;
export const RESPONSE_SIZE = 4096;
export const WRITE_SIZE = 128 * 1024;
/** Body of the sidecar rows' GET answers (bench/http-app.ts). */
export const HTTP_BODY_SIZE = 100;

/** How long each row runs: warm-up, then the measured window. */
export interface Timing {
  warmupMs: number;
  durationMs: number;
}

/** What a measurement returns: operations (or bytes) counted in the window, and its length. */
export interface Measured {
  count: number;
  seconds: number;
  perSec: number;
  /** True when the count stopped moving for stallMs (reported, never hidden). */
  stalled?: boolean;
  note?: string;
  [extra: string]: unknown;
}

/** The nearest-rank percentile `p` (0-100) of ascending samples; null when there are none. */
export function percentile(sorted: Float64Array, p: number): number | null {
  if (sorted.length === 0) return null;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i]!;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Samples a counter: waits the warm-up, then counts for the window. If the counter does not move for stallMs
 * the measurement stops and the rate up to the last progress is reported with stalled: true.
 */
export async function sampleCounter(read: () => number, timing: Timing, stallMs = 5_000): Promise<Measured> {
  const t0 = performance.now();
  let last = read();
  let lastAt = t0;
  let startCount = -1;
  let startAt = t0 + timing.warmupMs;
  let endAt = startAt + timing.durationMs;
  for (;;) {
    await sleep(10);
    const now = performance.now();
    const cur = read();
    if (cur !== last) {
      last = cur;
      lastAt = now;
    }
    if (startCount < 0 && now >= startAt) {
      startCount = cur;
      startAt = now;
      endAt = now + timing.durationMs;
    }
    if (now - lastAt >= stallMs) {
      const inWindow = startCount >= 0 && lastAt > startAt;
      const count = inWindow ? last - startCount : last;
      const seconds = (inWindow ? lastAt - startAt : lastAt - t0) / 1000;
      return { count, seconds, perSec: seconds > 0 ? count / seconds : 0, stalled: true };
    }
    if (now >= endAt) {
      const seconds = (now - startAt) / 1000;
      return { count: cur - startCount, seconds, perSec: (cur - startCount) / seconds };
    }
  }
}

/**
 * Runs `inflight` loops, each awaiting `op` one after the other, for the warm-up and the window; counts the
 * operations completed in the window. The first failure stops everything and is thrown.
 */
export async function measureOps(
  inflight: number,
  op: () => Promise<unknown>,
  timing: Timing,
): Promise<Measured> {
  let count = 0;
  let stop = false;
  let failure: unknown;
  const loops: Promise<void>[] = [];
  for (let i = 0; i < inflight; i++) {
    loops.push(
      (async () => {
        while (!stop) {
          try {
            await op();
          } catch (err) {
            failure ??= err;
            stop = true;
            return;
          }
          count++;
        }
      })(),
    );
  }
  const result = await sampleCounter(() => (failure ? Number.NaN : count), timing);
  stop = true;
  if (!result.stalled) await Promise.all(loops);
  if (failure) throw failure;
  return result;
}

/** One JSON line on stdout: how a child hands its result back. */
export function emit(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, (_k, v) => (typeof v === 'bigint' ? String(v) : v))}\n`);
}

export function tsxArgs(script: string, nodeArgs: string[] = []): string[] {
  return [...nodeArgs, '--import', 'tsx', join(benchDir, script)];
}

/** Extra node flags for server children (bench/profile.ts sets --cpu-prof here). */
export function serverNodeArgs(): string[] {
  const raw = process.env.BENCH_SERVER_NODE_ARGS;
  return raw ? raw.split(' ').filter(Boolean) : [];
}

/** A child that prints JSON lines on stdout; `next()` resolves with the next one. */
export class JsonChild {
  readonly child: ChildProcess;
  private lines: unknown[] = [];
  private waiters: Array<{ resolve: (v: unknown) => void; reject: (e: Error) => void }> = [];
  private buf = '';
  private stderr = '';
  private exited = false;

  constructor(command: string, args: string[], options: { env?: NodeJS.ProcessEnv } = {}) {
    this.child = spawn(command, args, {
      cwd: repoDir,
      env: { ...process.env, ...options.env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    this.child.stdout!.setEncoding('utf8');
    this.child.stderr!.setEncoding('utf8');
    this.child.stdin!.on('error', () => {});
    this.child.stdout!.on('data', (chunk: string) => {
      this.buf += chunk;
      for (let nl = this.buf.indexOf('\n'); nl >= 0; nl = this.buf.indexOf('\n')) {
        const line = this.buf.slice(0, nl).trim();
        this.buf = this.buf.slice(nl + 1);
        if (!line.startsWith('{')) continue;
        let value: unknown;
        try {
          value = JSON.parse(line);
        } catch {
          continue;
        }
        const w = this.waiters.shift();
        if (w) w.resolve(value);
        else this.lines.push(value);
      }
    });
    this.child.stderr!.on('data', (chunk: string) => {
      this.stderr = (this.stderr + chunk).slice(-16_384);
      if (process.env.BENCH_DEBUG) process.stderr.write(chunk);
    });
    this.child.on('close', (code, signal) => {
      this.exited = true;
      const err = new Error(`${command} ${args.join(' ')} exited (${code ?? signal})\n${this.stderr}`);
      for (const w of this.waiters.splice(0)) w.reject(err);
    });
  }

  // biome-ignore lint/suspicious/noExplicitAny: JSON from our own children
  next(timeoutMs = 120_000): Promise<any> {
    const ready = this.lines.shift();
    if (ready !== undefined) return Promise.resolve(ready);
    if (this.exited) return Promise.reject(new Error(`child exited\n${this.stderr}`));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w.resolve !== done);
        reject(new Error(`no result within ${timeoutMs} ms\n${this.stderr}`));
      }, timeoutMs);
      const done = (v: unknown) => {
        clearTimeout(timer);
        resolve(v);
      };
      this.waiters.push({
        resolve: done,
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
    });
  }

  send(line: string): void {
    this.child.stdin!.write(`${line}\n`);
  }

  /** Closes stdin (our children exit on EOF) and waits up to 5 s, then kills. */
  async stop(): Promise<void> {
    if (this.exited) return;
    const gone = new Promise<void>((resolve) => this.child.once('close', () => resolve()));
    this.child.stdin!.end();
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 5_000);
    await gone;
    clearTimeout(timer);
  }
}

/** Starts bench/server.ts (kind: geminio or grpc) in its own process; resolves with it and its address. */
export async function startNodeServer(
  kind: 'geminio' | 'grpc' | 'tcp',
  nodeArgs: string[] = serverNodeArgs(),
  args: string[] = [],
): Promise<{ server: JsonChild; host: string; port: number }> {
  const server = new JsonChild(process.execPath, [...tsxArgs('server.ts', nodeArgs), kind, ...args]);
  const ready = await server.next(30_000);
  return { server, host: ready.host, port: ready.port };
}

/** Builds the Go bench program (GONOSUMDB as in test/interop/go-peer.ts). */
export function buildGoBench(): Promise<void> {
  const env = { ...process.env };
  env.GONOSUMDB = [env.GONOSUMDB, 'github.com/singchia/geminio'].filter(Boolean).join(',');
  env.GOFLAGS = [env.GOFLAGS, '-buildvcs=false'].filter(Boolean).join(' ');
  return new Promise((resolve, reject) => {
    execFile(
      'go',
      ['build', '-o', goBenchBinary, './geminio-bench'],
      { cwd: interopDir, env, timeout: 10 * 60_000 },
      (err, stdout, stderr) => (err ? reject(new Error(`go build failed: ${stdout}${stderr}`)) : resolve()),
    );
  });
}

/** Runs the Go bench program with these flags and returns its result line. */
// biome-ignore lint/suspicious/noExplicitAny: JSON from the Go program
export async function runGo(args: string[], timeoutMs = 120_000): Promise<any> {
  const child = new JsonChild(goBenchBinary, args);
  try {
    const result = await child.next(timeoutMs);
    if (result.event === 'error') throw new Error(`go bench ${args.join(' ')}: ${result.error}`);
    return result;
  } finally {
    await child.stop();
  }
}

/** A free loopback port (bound, read, released: the child binds it right after). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}
