/**
 * The gRPC rows (issue 16): a grpc-js unary call (16-byte message) at 1 and 64 concurrent calls, and a
 * server-streaming call (64 KiB messages), each direct (client -> grpc-js server) and through two sidecars
 * (client -> outbound sidecar (h2c) -> geminio -> inbound sidecar -> h2c:// target), all in one fresh process
 * started by bench/run.ts (`runGrpcBench`), so both paths share the same CPU. On its own:
 *
 *   npx tsx bench/grpc.ts [--quick]
 *
 * prints one JSON line {direct, sidecar} of {unaryPerSec64, unaryP50Us1, streamMBps}. Reported, never asserted.
 */
import { fileURLToPath } from 'node:url';
import type * as grpc from '@grpc/grpc-js';
import { parseConfig } from '../sidecar/config/load.js';
import { Sidecar } from '../sidecar/main.js';
import { createLogger } from '../sidecar/observe/logger.js';
import type { HttpOutboundListener } from '../sidecar/outbound/http-listener.js';
import { echoClient, echoService, startEchoServer } from '../test/sidecar/grpc-helpers.js';
import { JsonChild, type Timing, tsxArgs } from './lib.js';

export interface GrpcPathResult {
  unaryPerSec64: number;
  unaryP50Us1: number;
  streamMBps: number;
}
export interface GrpcResults {
  direct: GrpcPathResult;
  sidecar: GrpcPathResult;
}

type Client = ReturnType<typeof echoClient>;

function call(client: Client, body: Buffer): Promise<void> {
  return new Promise((resolve, reject) =>
    (client.unary as (...a: unknown[]) => void)(body, (err: Error | null) => (err ? reject(err) : resolve())),
  );
}

async function unaryLoad(
  client: Client,
  concurrency: number,
  t: Timing,
): Promise<{ perSec: number; p50Us: number }> {
  const body = Buffer.alloc(16, 1);
  const lat: number[] = [];
  let counting = false;
  let count = 0;
  let stop = false;
  const worker = async () => {
    while (!stop) {
      const t0 = process.hrtime.bigint();
      await call(client, body);
      if (counting) {
        count++;
        lat.push(Number(process.hrtime.bigint() - t0) / 1e3);
      }
    }
  };
  const workers = Array.from({ length: concurrency }, worker);
  await new Promise((r) => setTimeout(r, t.warmupMs));
  counting = true;
  const start = Date.now();
  await new Promise((r) => setTimeout(r, t.durationMs));
  counting = false;
  const seconds = (Date.now() - start) / 1e3;
  stop = true;
  await Promise.all(workers);
  lat.sort((a, b) => a - b);
  return { perSec: count / seconds, p50Us: lat[Math.floor(lat.length / 2)] ?? 0 };
}

async function streamLoad(client: Client, t: Timing): Promise<number> {
  const end = Date.now() + t.warmupMs + t.durationMs;
  let bytes = 0;
  let measuredFrom = 0;
  const warmEnd = Date.now() + t.warmupMs;
  while (Date.now() < end) {
    await new Promise<void>((resolve, reject) => {
      const c = (client.serverStream as (...a: unknown[]) => grpc.ClientReadableStream<Buffer>)(
        Buffer.from(`256x${64 * 1024}`),
      );
      c.on('data', (b: Buffer) => {
        if (Date.now() >= warmEnd) {
          if (measuredFrom === 0) measuredFrom = Date.now();
          bytes += b.length;
        }
      });
      c.on('status', () => resolve());
      c.on('error', reject);
    });
  }
  return bytes / 1e6 / ((Date.now() - measuredFrom) / 1e3);
}

async function measure(port: number, t: Timing): Promise<GrpcPathResult> {
  const client = echoClient(port);
  const one = await unaryLoad(client, 1, t);
  const many = await unaryLoad(client, 64, t);
  const streamMBps = await streamLoad(client, t);
  client.close();
  return { unaryPerSec64: many.perSec, unaryP50Us1: one.p50Us, streamMBps };
}

async function child(t: Timing): Promise<void> {
  void echoService;
  const echo = await startEchoServer();
  const logger = createLogger({ level: 'silent', format: 'json' });
  const inbound = new Sidecar(
    parseConfig({
      name: 'inbound',
      log: { level: 'silent' },
      admin: { listen: '127.0.0.1:0' },
      inbound: { listen: '127.0.0.1:0' },
      services: { grpc: { target: `h2c://127.0.0.1:${echo.port}` } },
    }),
    { logger },
  );
  await inbound.start();
  const outbound = new Sidecar(
    parseConfig({
      name: 'outbound',
      log: { level: 'silent' },
      admin: { listen: '127.0.0.1:0' },
      upstreams: { up: { address: `127.0.0.1:${inbound.inbound!.address()!.port}` } },
      outbound: { http: [{ name: 'web', listen: '127.0.0.1:0', upstream: 'up', service: 'grpc' }] },
    }),
    { logger },
  );
  await outbound.start();
  await outbound.upstreams.get('up')!.waitConnected();
  const web = outbound.listeners.get('web')!.listener as HttpOutboundListener;
  const direct = await measure(echo.port, t);
  const sidecar = await measure(web.address().port, t);
  console.log(JSON.stringify({ direct, sidecar } satisfies GrpcResults));
  outbound.destroy();
  inbound.destroy();
  await echo.close();
  process.exit(0);
}

/** Runs the gRPC rows in a fresh process. */
export async function runGrpcBench(t: Timing): Promise<GrpcResults> {
  const c = new JsonChild(process.execPath, [
    ...tsxArgs('grpc.ts'),
    '--child',
    String(t.warmupMs),
    String(t.durationMs),
  ]);
  return (await c.next()) as GrpcResults;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const i = process.argv.indexOf('--child');
  if (i >= 0) {
    await child({ warmupMs: Number(process.argv[i + 1]), durationMs: Number(process.argv[i + 2]) });
  } else {
    const quick = process.argv.includes('--quick');
    console.log(
      JSON.stringify(
        await runGrpcBench(
          quick ? { warmupMs: 300, durationMs: 1_000 } : { warmupMs: 1_000, durationMs: 3_000 },
        ),
      ),
    );
    process.exit(0);
  }
}
