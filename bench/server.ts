/**
 * The server side of the two-process Node rows, in its own process:
 *
 *   tsx bench/server.ts geminio   geminio-node Listener: "echo" answers 4 KiB, publishes are acked at once,
 *                                 accepted streams are drained and ended back when the peer ends them.
 *   tsx bench/server.ts grpc      @grpc/grpc-js server with one unary method /bench.Bench/Echo (raw Buffers).
 *   tsx bench/server.ts tcp REQ RES   no protocol: a net.Server answering every REQ bytes read with RES bytes
 *                                 (the raw ping-pong anchor of the sequential rows).
 *
 * Prints {"host","port"} once listening. Stdin commands: "mem" prints {heapUsed, rss, ...} after forced GCs
 * (run with --expose-gc), "count" prints how many Ends/streams it holds. Exits when stdin closes.
 */
import net from 'node:net';
import { createInterface } from 'node:readline';
import * as grpc from '@grpc/grpc-js';
import { type End, listen } from '../sdk/index.js';
import { emit, RESPONSE_SIZE } from './lib.js';

const response = Buffer.alloc(RESPONSE_SIZE, 7);
const ends = new Set<End>();
let openStreams = 0;
let acceptedStreams = 0;

async function geminio(): Promise<() => Promise<void>> {
  const listener = await listen('127.0.0.1:0', { registerLocalRpcs: { echo: () => response } });
  (async () => {
    for await (const end of listener) {
      ends.add(end);
      end.once('close', () => ends.delete(end));
      end.on('error', () => {});
      (async () => {
        for (;;) {
          const msg = await end.receive();
          msg.done();
        }
      })().catch(() => {});
      (async () => {
        for await (const s of end.streams()) {
          acceptedStreams++;
          openStreams++;
          s.on('error', () => {});
          s.once('close', () => openStreams--);
          s.on('end', () => s.end());
          s.resume();
        }
      })().catch(() => {});
    }
  })().catch(() => {});
  const { host, port } = listener.address();
  emit({ host, port });
  return async () => {
    await listener.close();
    for (const end of ends) end.destroy();
  };
}

async function grpcServer(): Promise<() => Promise<void>> {
  const server = new grpc.Server();
  const identity = (b: Buffer) => b;
  server.addService(
    {
      echo: {
        path: '/bench.Bench/Echo',
        requestStream: false,
        responseStream: false,
        requestSerialize: identity,
        requestDeserialize: identity,
        responseSerialize: identity,
        responseDeserialize: identity,
      },
    },
    {
      echo: (_call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) =>
        cb(null, response),
    },
  );
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) =>
      err ? reject(err) : resolve(p),
    ),
  );
  emit({ host: '127.0.0.1', port });
  return async () => {
    server.forceShutdown();
  };
}

function tcpServer(requestSize: number, responseSize: number): Promise<() => Promise<void>> {
  const answer = Buffer.alloc(responseSize, 7);
  const sockets = new Set<net.Socket>();
  const server = net.createServer({ noDelay: true }, (c) => {
    sockets.add(c);
    c.once('close', () => sockets.delete(c));
    c.on('error', () => {});
    let pending = 0;
    c.on('data', (d) => {
      pending += d.length;
      for (; pending >= requestSize; pending -= requestSize) c.write(answer);
    });
  });
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      emit({ host: '127.0.0.1', port });
      resolve(async () => {
        for (const c of sockets) c.destroy();
        server.close();
      });
    }),
  );
}

function memory() {
  const gc = (globalThis as { gc?: () => void }).gc;
  for (let i = 0; i < 4; i++) gc?.();
  const m = process.memoryUsage();
  return { heapUsed: m.heapUsed, rss: m.rss, external: m.external, arrayBuffers: m.arrayBuffers, gc: !!gc };
}

const kind = process.argv[2];
const shutdown =
  kind === 'grpc'
    ? await grpcServer()
    : kind === 'tcp'
      ? await tcpServer(Number(process.argv[3]), Number(process.argv[4]))
      : await geminio();
const rl = createInterface({ input: process.stdin });
rl.on('line', (line) => {
  if (line === 'mem') emit(memory());
  else if (line === 'count') emit({ ends: ends.size, openStreams, acceptedStreams });
});
rl.on('close', () => {
  shutdown().finally(() => process.exit(0));
});
