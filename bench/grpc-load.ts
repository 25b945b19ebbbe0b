/**
 * The gRPC load generator of the gRPC rows, in its own process:
 *
 *   node --import tsx bench/grpc-load.ts '{"port","mode":"unary"|"stream","concurrency","warmupMs","durationMs"}'
 *
 * One grpc-js client (one HTTP/2 connection, as grpc-js opens it) to 127.0.0.1:port and `concurrency` loops, each
 * making the next call when the last one ended (closed loop): `unary` sends a 16-byte message and awaits the answer;
 * `stream` makes a server-streaming call of 256 messages of 64 KiB and reads it to its status. After the warm-up it
 * prints {"event":"window"} (the orchestrator samples the other processes' CPU time there), then, after the window,
 * one result line like bench/http-load.ts's: {count, seconds, perSec, p50Us, p90Us, p99Us, maxUs, meanUs, cpuPct,
 * cpuUs} with, for `stream`, count = messages read in the window and mbPerSec. Latency (unary) is per call, from the
 * call to its callback, for the calls that completed inside the window. Any failed call fails the run.
 */
import type * as grpc from '@grpc/grpc-js';
import { echoClient } from '../test/sidecar/grpc-helpers.js';
import { emit, percentile, sleep } from './lib.js';

interface Options {
  port: number;
  mode: 'unary' | 'stream';
  concurrency: number;
  warmupMs: number;
  durationMs: number;
}

const STREAM_MESSAGES = 256;
const STREAM_MESSAGE_SIZE = 64 * 1024;
const UNARY_SIZE = 16;

const o = JSON.parse(process.argv[2] ?? '{}') as Options;
const client = echoClient(o.port);
const body = Buffer.alloc(UNARY_SIZE, 1);
const streamRequest = Buffer.from(`${STREAM_MESSAGES}x${STREAM_MESSAGE_SIZE}`);

let measuring = false;
let stop = false;
let failure: unknown;
const latencies: number[] = [];
let messages = 0;
let bytes = 0;

function unaryCall(): Promise<void> {
  const t0 = performance.now();
  return new Promise((resolve, reject) =>
    (client.unary as (...a: unknown[]) => void)(body, (err: Error | null, answer?: Buffer) => {
      if (err) return reject(err);
      if (answer?.length !== UNARY_SIZE) return reject(new Error(`answer of ${answer?.length} bytes`));
      if (measuring) latencies.push(performance.now() - t0);
      resolve();
    }),
  );
}

function streamCall(): Promise<void> {
  return new Promise((resolve, reject) => {
    const c = (client.serverStream as (...a: unknown[]) => grpc.ClientReadableStream<Buffer>)(streamRequest);
    c.on('data', (b: Buffer) => {
      if (!measuring) return;
      messages++;
      bytes += b.length;
    });
    c.on('status', (s: grpc.StatusObject) => (s.code === 0 ? resolve() : reject(new Error(s.details))));
    c.on('error', reject);
  });
}

async function loop(): Promise<void> {
  const call = o.mode === 'stream' ? streamCall : unaryCall;
  while (!stop) {
    try {
      await call();
      completed++;
    } catch (err) {
      failure ??= err;
      stop = true;
    }
  }
}

// A "mark" line on stdin: the calls completed so far (bench/grpc.ts --count brackets its counting window with two).
let completed = 0;
process.stdin.setEncoding('utf8');
process.stdin.on('data', (chunk: string) => {
  for (const line of chunk.split('\n')) if (line.trim() === 'mark') emit({ event: 'mark', completed });
});

try {
  const loops = Array.from({ length: o.concurrency }, () => loop());
  await sleep(o.warmupMs);
  if (failure) throw failure;
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
  const count = o.mode === 'stream' ? messages : latencies.length;
  emit({
    count,
    seconds,
    perSec: count / seconds,
    ...(o.mode === 'stream' ? { mbPerSec: bytes / 1e6 / seconds } : {}),
    p50Us: us(percentile(sorted, 50)),
    p90Us: us(percentile(sorted, 90)),
    p99Us: us(percentile(sorted, 99)),
    maxUs: us(percentile(sorted, 100)),
    meanUs: us(latencies.reduce((a, b) => a + b, 0) / Math.max(1, latencies.length)),
    cpuPct: Math.round((100 * (cpu.user + cpu.system)) / 1000 / (seconds * 1000)),
    cpuUs: cpu.user + cpu.system,
  });
} catch (err) {
  emit({ error: (err as Error).message ?? String(err) });
}
client.close();
process.exit(0);
