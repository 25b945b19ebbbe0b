/**
 * One benchmark case in a fresh process (bench/run.ts and bench/profile.ts spawn it):
 *
 *   tsx bench/worker.ts <case> '<json options>'
 *
 * Cases (options always carry warmupMs and durationMs):
 *   rpc        {inflight, server: 'node'|'go'|'inproc'}
 *                                               geminio-node client; the server is bench/server.ts (another Node
 *                                               process), the Go bench program in -mode server, or (inproc) a
 *                                               Listener in this same process
 *   grpc       {inflight}                       @grpc/grpc-js unary client, server in another Node process
 *   publish    {inflight, server: 'node'|'go'|'inproc'}
 *                                               acked publishes of 5 bytes to bench/server.ts, the Go bench program
 *                                               in -mode server, or (inproc) a Listener in this same process
 *   stream     {streams, transport: 'geminio'|'tcp'|'yamux'}
 *                                               128 KiB writes, both ends in this process, MB/s at the reader
 *   openclose  {inflight}                       open, write 1 byte, end, wait for 'close'; server in another process
 *   pingpong   {request, response}              no protocol: one socket write of `request` bytes, then wait for
 *                                               `response` bytes, in a loop, to bench/server.ts tcp in another
 *                                               process (the floor of the sequential two-process rows)
 *
 * Prints one JSON line: {count, seconds, perSec, stalled?}.
 */
import net from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { dial, type End, listen, type Stream } from '../sdk/index.js';
import {
  emit,
  goBenchBinary,
  JsonChild,
  type Measured,
  measureOps,
  REQUEST_SIZE,
  RESPONSE_SIZE,
  sampleCounter,
  startNodeServer,
  type Timing,
  WRITE_SIZE,
} from './lib.js';
import { waitDrain, yamuxOverSocket } from './yamux.js';

interface Options extends Timing {
  inflight?: number;
  request?: number;
  response?: number;
  server?: 'node' | 'go' | 'inproc';
  streams?: number;
  transport?: 'geminio' | 'tcp' | 'yamux';
}

const request = Buffer.alloc(REQUEST_SIZE, 1);

function check(len: number): void {
  if (len !== RESPONSE_SIZE) throw new Error(`response of ${len} bytes, expected ${RESPONSE_SIZE}`);
}

async function withServer(
  kind: 'node-geminio' | 'node-grpc' | 'go',
  body: (host: string, port: number) => Promise<Measured>,
): Promise<Measured> {
  if (kind === 'go') {
    const go = new JsonChild(goBenchBinary, ['-mode', 'server']);
    try {
      const ready = await go.next(30_000);
      const addr = String(ready.addr);
      const i = addr.lastIndexOf(':');
      return await body(addr.slice(0, i), Number(addr.slice(i + 1)));
    } finally {
      await go.stop();
    }
  }
  const { server, host, port } = await startNodeServer(kind === 'node-grpc' ? 'grpc' : 'geminio');
  try {
    return await body(host, port);
  } finally {
    await server.stop();
  }
}

async function rpcCase(o: Options): Promise<Measured> {
  if (o.server === 'inproc') {
    // Both Ends in this process (for comparison with the Go anchor, which is one process too).
    const response = Buffer.alloc(RESPONSE_SIZE, 7);
    const listener = await listen('127.0.0.1:0', { registerLocalRpcs: { echo: () => response } });
    const [end, server] = await Promise.all([
      dial(listener.address(), { waitRemoteRpcs: ['echo'] }),
      listener.acceptEnd(),
    ]);
    try {
      return await measureOps(
        o.inflight ?? 1,
        async () => check((await end.call('echo', request)).data.length),
        o,
      );
    } finally {
      end.destroy();
      server.destroy();
      await listener.close();
    }
  }
  return withServer(o.server === 'go' ? 'go' : 'node-geminio', async (host, port) => {
    const end = await dial({ host, port }, { waitRemoteRpcs: ['echo'] });
    try {
      return await measureOps(
        o.inflight ?? 1,
        async () => check((await end.call('echo', request)).data.length),
        o,
      );
    } finally {
      end.destroy();
    }
  });
}

async function grpcCase(o: Options): Promise<Measured> {
  return withServer('node-grpc', async (host, port) => {
    const identity = (b: Buffer) => b;
    const Client = grpc.makeGenericClientConstructor(
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
      'Bench',
    );
    // One client = one channel = one HTTP/2 connection.
    const client = new Client(`${host}:${port}`, grpc.credentials.createInsecure());
    type Unary = (req: Buffer, cb: (err: grpc.ServiceError | null, res?: Buffer) => void) => void;
    const echo = (client as unknown as { echo: Unary }).echo.bind(client);
    const call = () =>
      new Promise<void>((resolve, reject) =>
        echo(request, (err, res) => {
          if (err) reject(err);
          else {
            check(res!.length);
            resolve();
          }
        }),
      );
    try {
      await call();
      return await measureOps(o.inflight ?? 1, call, o);
    } finally {
      client.close();
    }
  });
}

async function publishCase(o: Options): Promise<Measured> {
  const payload = Buffer.from('hello');
  if (o.server === 'inproc') {
    // Both Ends in this process (the shape of the one-process Go anchor); the receiver acks at once.
    const listener = await listen('127.0.0.1:0');
    const [end, server] = await Promise.all([dial(listener.address()), listener.acceptEnd()]);
    (async () => {
      for (;;) (await server.receive()).done();
    })().catch(() => {});
    try {
      return await measureOps(o.inflight ?? 1, () => end.publish(payload), o);
    } finally {
      end.destroy();
      server.destroy();
      await listener.close();
    }
  }
  return withServer(o.server === 'go' ? 'go' : 'node-geminio', async (host, port) => {
    const end = await dial({ host, port });
    try {
      return await measureOps(o.inflight ?? 1, () => end.publish(payload), o);
    } finally {
      end.destroy();
    }
  });
}

/** Writes 128 KiB buffers as fast as the writable side takes them, until stop() is called. */
function pump(write: (b: Buffer) => boolean, onDrain: (cb: () => void) => void): () => void {
  const buf = Buffer.alloc(WRITE_SIZE, 0x5a);
  let stopped = false;
  const loop = () => {
    while (!stopped) {
      if (!write(buf)) {
        onDrain(loop);
        return;
      }
    }
  };
  setImmediate(loop);
  return () => {
    stopped = true;
  };
}

async function streamCase(o: Options): Promise<Measured> {
  const n = o.streams ?? 1;
  let received = 0;
  const stops: Array<() => void> = [];
  const cleanups: Array<() => void> = [];
  const transport = o.transport ?? 'geminio';
  // Bytes read from the receiving TCP socket: proof that what the reader counted really crossed the wire.
  let wireBytes = () => 0;
  try {
    if (transport === 'geminio') {
      const listener = await listen('127.0.0.1:0');
      const [client, server] = await Promise.all([dial(listener.address()), listener.acceptEnd()]);
      cleanups.push(() => {
        client.destroy();
        server.destroy();
        listener.close();
      });
      const sock = (server as unknown as { conn: { transport: net.Socket } }).conn.transport;
      wireBytes = () => sock.bytesRead;
      const writers: Stream[] = [];
      for (let i = 0; i < n; i++) {
        const [w, r] = await Promise.all([client.openStream(), server.acceptStream()]);
        r.on('data', (b: Buffer) => {
          received += b.length;
        });
        r.on('error', () => {});
        w.on('error', () => {});
        writers.push(w);
      }
      for (const w of writers)
        stops.push(
          pump(
            (b) => w.write(b),
            (cb) => w.once('drain', cb),
          ),
        );
    } else {
      const srv = net.createServer();
      await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
      const { port } = srv.address() as net.AddressInfo;
      const accepted = new Promise<net.Socket>((resolve) => srv.once('connection', resolve));
      const c = net.connect(port, '127.0.0.1');
      await new Promise<void>((resolve) => c.once('connect', () => resolve()));
      const s = await accepted;
      for (const sock of [c, s]) {
        sock.setNoDelay(true);
        sock.on('error', () => {});
      }
      wireBytes = () => s.bytesRead;
      cleanups.push(() => {
        c.destroy();
        s.destroy();
        srv.close();
      });
      if (transport === 'tcp') {
        // Raw TCP: one connection whatever `streams` says (the ceiling the multiplexers share).
        s.on('data', (b: Buffer) => {
          received += b.length;
        });
        stops.push(
          pump(
            (b) => c.write(b),
            (cb) => c.once('drain', cb),
          ),
        );
      } else {
        const clientMux = yamuxOverSocket(c, 'outbound');
        const serverMux = yamuxOverSocket(s, 'inbound');
        serverMux.addEventListener('stream', (evt) => {
          evt.detail.addEventListener('message', (m) => {
            received += m.data.byteLength;
          });
        });
        cleanups.push(() => {
          clientMux.abort(new Error('done'));
          serverMux.abort(new Error('done'));
        });
        for (let i = 0; i < n; i++) {
          const st = await clientMux.createStream();
          stops.push(
            pump(
              (b) => st.send(b),
              (cb) => waitDrain(st, cb),
            ),
          );
        }
      }
    }
    const m = await sampleCounter(() => received, o, 3_000);
    return { ...m, mbPerSec: m.perSec / 1e6, receivedTotal: received, wireTotal: wireBytes() };
  } finally {
    for (const stop of stops) stop();
    for (const c of cleanups) c();
  }
}

async function openCloseCase(o: Options): Promise<Measured> {
  return withServer('node-geminio', async (host, port) => {
    const end: End = await dial({ host, port });
    const one = Buffer.from([1]);
    const cycle = async () => {
      const s = await end.openStream();
      await new Promise<void>((resolve, reject) => {
        s.once('close', () => resolve());
        s.once('error', reject);
        s.resume();
        s.end(one);
      });
    };
    try {
      return await measureOps(o.inflight ?? 1, cycle, o);
    } finally {
      end.destroy();
    }
  });
}

async function pingPongCase(o: Options): Promise<Measured> {
  const requestSize = o.request ?? REQUEST_SIZE;
  const responseSize = o.response ?? RESPONSE_SIZE;
  const { server, host, port } = await startNodeServer('tcp', undefined, [
    String(requestSize),
    String(responseSize),
  ]);
  const socket = net.connect({ host, port, noDelay: true });
  try {
    await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
    const req = Buffer.alloc(requestSize, 1);
    let received = 0;
    let answered: (() => void) | undefined;
    socket.on('data', (d: Buffer) => {
      received += d.length;
      if (received >= responseSize) {
        received -= responseSize;
        answered?.();
      }
    });
    const roundTrip = () =>
      new Promise<void>((resolve) => {
        answered = resolve;
        socket.write(req);
      });
    return await measureOps(1, roundTrip, o);
  } finally {
    socket.destroy();
    await server.stop();
  }
}

const cases: Record<string, (o: Options) => Promise<Measured>> = {
  rpc: rpcCase,
  grpc: grpcCase,
  publish: publishCase,
  stream: streamCase,
  openclose: openCloseCase,
  pingpong: pingPongCase,
};

const [name, raw] = process.argv.slice(2);
const run = cases[name ?? ''];
if (!run) {
  console.error(`unknown case ${name}; one of ${Object.keys(cases).join(', ')}`);
  process.exit(2);
}
const options = JSON.parse(raw ?? '{}') as Options;
try {
  emit(await run(options));
  process.exit(0);
} catch (err) {
  emit({ error: err instanceof Error ? (err.stack ?? err.message) : String(err) });
  process.exit(1);
}
