/**
 * The HTTP load generator of the sidecar rows, in its own process:
 *
 *   node --import tsx bench/http-load.ts '{"url","concurrency","warmupMs","durationMs"}'
 *
 * An undici Pool with `concurrency` keep-alive connections (no pipelining) and as many loops, each sending
 * GET / and reading the whole body before the next request (closed loop). After the warm-up it prints
 * {"event":"window"} (the orchestrator samples the servers' CPU time there), then, after the window, one result
 * line: {count, seconds, perSec, p50Us, p90Us, p99Us, maxUs, meanUs, cpuPct, cpuUs} (cpu*: its own CPU in the
 * window). Latency is per request, from `request()` to the body's last byte, for the requests that completed
 * inside the window. Any non-200 answer or a body of the wrong size fails the run.
 */
import { Pool } from 'undici';
import { emit, HTTP_BODY_SIZE, percentile, sleep } from './lib.js';

interface Options {
  url: string;
  concurrency: number;
  warmupMs: number;
  durationMs: number;
}

const o = JSON.parse(process.argv[2] ?? '{}') as Options;
const pool = new Pool(o.url, { connections: o.concurrency, pipelining: 1, keepAliveTimeout: 60_000 });

let measuring = false;
let stop = false;
let failure: unknown;
const latencies: number[] = [];

async function one(): Promise<void> {
  const t0 = performance.now();
  const { statusCode, body } = await pool.request({ path: '/', method: 'GET' });
  const bytes = await body.arrayBuffer();
  const dt = performance.now() - t0;
  if (statusCode !== 200 || bytes.byteLength !== HTTP_BODY_SIZE) {
    throw new Error(`GET ${o.url}/: status ${statusCode}, ${bytes.byteLength} bytes`);
  }
  if (measuring) latencies.push(dt);
}

async function loop(): Promise<void> {
  while (!stop) {
    try {
      await one();
    } catch (err) {
      failure ??= err;
      stop = true;
    }
  }
}

try {
  const loops = Array.from({ length: o.concurrency }, () => loop());
  await sleep(o.warmupMs);
  emit({ event: 'window' });
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  measuring = true;
  await sleep(o.durationMs);
  measuring = false;
  const seconds = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  stop = true;
  await Promise.all(loops);
  if (failure) throw failure;
  const sorted = Float64Array.from(latencies).sort();
  const us = (ms: number | null) => (ms === null ? null : Math.round(ms * 1000 * 10) / 10);
  const sum = latencies.reduce((a, b) => a + b, 0);
  emit({
    count: latencies.length,
    seconds,
    perSec: latencies.length / seconds,
    p50Us: us(percentile(sorted, 50)),
    p90Us: us(percentile(sorted, 90)),
    p99Us: us(percentile(sorted, 99)),
    maxUs: us(percentile(sorted, 100)),
    meanUs: us(sum / Math.max(1, latencies.length)),
    cpuPct: Math.round((100 * (cpu.user + cpu.system)) / 1000 / (seconds * 1000)),
    cpuUs: cpu.user + cpu.system,
  });
} catch (err) {
  emit({ error: (err as Error).message ?? String(err) });
}
await pool.close().catch(() => {});
process.exit(0);
