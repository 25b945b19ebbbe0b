/**
 * A real @grpc/grpc-js server and client for the HTTP/2 tests: one service with the four call kinds on raw bytes
 * (no protobuf: the sidecar carries bytes, so the messages are Buffers), metadata both ways, errors with details,
 * and a call that never answers (for deadlines and cancellation).
 */
import { createHash } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';

const raw = { serialize: (b: Buffer) => b, deserialize: (b: Buffer) => b };
function method(path: string, requestStream: boolean, responseStream: boolean) {
  return {
    path: `/test.Echo/${path}`,
    requestStream,
    responseStream,
    requestSerialize: raw.serialize,
    requestDeserialize: raw.deserialize,
    responseSerialize: raw.serialize,
    responseDeserialize: raw.deserialize,
  };
}

export const echoService = {
  unary: method('Unary', false, false),
  serverStream: method('ServerStream', false, true),
  clientStream: method('ClientStream', true, false),
  bidi: method('Bidi', true, true),
  hang: method('Hang', false, false),
} satisfies grpc.ServiceDefinition;

export interface EchoServer {
  port: number;
  /** Calls of `hang` whose cancellation reached the server, with when it arrived (ms since epoch). */
  cancelled: number[];
  /** Calls of `hang` started. */
  hangs: number;
  /** The `traceparent` metadata of each unary call, in order ('' when it had none). */
  traceparents: string[];
  close: () => Promise<void>;
}

/** The `x-client` metadata of a call, echoed back in its head and a custom trailer. */
function echoMeta(call: {
  metadata: grpc.Metadata;
  sendMetadata: (m: grpc.Metadata) => void;
}): grpc.Metadata {
  const head = new grpc.Metadata();
  head.set('x-echo-client', String(call.metadata.get('x-client')[0] ?? ''));
  call.sendMetadata(head);
  const trailer = new grpc.Metadata();
  trailer.set('x-trailer', 'bye');
  return trailer;
}

/** The echo server on 127.0.0.1 (plaintext h2c, or TLS with `credentials`). */
export async function startEchoServer(
  credentials = grpc.ServerCredentials.createInsecure(),
): Promise<EchoServer> {
  const state = { cancelled: [] as number[], hangs: 0, traceparents: [] as string[] };
  const server = new grpc.Server();
  server.addService(echoService, {
    unary: (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => {
      state.traceparents.push(String(call.metadata.get('traceparent')[0] ?? ''));
      const trailer = echoMeta(call);
      if (call.request.toString() === 'fail') {
        const md = new grpc.Metadata();
        md.set('x-error-detail', 'the detail');
        return cb({ code: grpc.status.INVALID_ARGUMENT, details: 'bad request: fail', metadata: md });
      }
      cb(null, call.request, trailer);
    },
    serverStream: (call: grpc.ServerWritableStream<Buffer, Buffer>) => {
      const trailer = echoMeta(call);
      const [count, size] = call.request.toString().split('x').map(Number);
      const chunk = Buffer.alloc(size ?? 16, 7);
      let i = 0;
      const pump = () => {
        while (i < (count ?? 1)) {
          i++;
          if (!call.write(chunk)) return void call.once('drain', pump);
        }
        call.end(trailer);
      };
      pump();
    },
    clientStream: (call: grpc.ServerReadableStream<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => {
      const trailer = echoMeta(call);
      const h = createHash('sha256');
      let n = 0;
      call.on('data', (b: Buffer) => {
        h.update(b);
        n += b.length;
      });
      call.on('end', () => cb(null, Buffer.from(`${n}:${h.digest('hex')}`), trailer));
    },
    bidi: (call: grpc.ServerDuplexStream<Buffer, Buffer>) => {
      const trailer = echoMeta(call);
      call.on('data', (b: Buffer) => call.write(Buffer.concat([Buffer.from('echo:'), b])));
      call.on('end', () => call.end(trailer));
    },
    hang: (call: grpc.ServerUnaryCall<Buffer, Buffer>) => {
      state.hangs++;
      call.on('cancelled', () => state.cancelled.push(Date.now()));
    },
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', credentials, (err, p) => (err ? reject(err) : resolve(p))),
  );
  return {
    port,
    get cancelled() {
      return state.cancelled;
    },
    get hangs() {
      return state.hangs;
    },
    traceparents: state.traceparents,
    close: () => new Promise<void>((r) => server.tryShutdown(() => r())),
  } as EchoServer;
}

export type EchoClient = grpc.Client & Record<keyof typeof echoService, (...args: unknown[]) => unknown>;

/** A client of the echo service at 127.0.0.1:port (plaintext, or TLS with `credentials`). */
export function echoClient(
  port: number,
  credentials = grpc.credentials.createInsecure(),
  options: grpc.ClientOptions = {},
): EchoClient {
  const Client = grpc.makeGenericClientConstructor(echoService, 'Echo');
  return new Client(`127.0.0.1:${port}`, credentials, options) as unknown as EchoClient;
}

export function clientMeta(): grpc.Metadata {
  const md = new grpc.Metadata();
  md.set('x-client', 'c1');
  return md;
}

/** A unary call as a promise, with its head and trailer metadata. */
export function unary(
  client: EchoClient,
  name: 'unary' | 'hang',
  body: Buffer,
  options: grpc.CallOptions = {},
): Promise<{ value: Buffer; head: grpc.Metadata; status: grpc.StatusObject }> & {
  call?: grpc.ClientUnaryCall;
} {
  let call: grpc.ClientUnaryCall | undefined;
  let head = new grpc.Metadata();
  let status: grpc.StatusObject | undefined;
  const p = new Promise<{ value: Buffer; head: grpc.Metadata; status: grpc.StatusObject }>(
    (resolve, reject) => {
      call = (client[name] as (...a: unknown[]) => grpc.ClientUnaryCall)(
        body,
        clientMeta(),
        options,
        (err: grpc.ServiceError | null, value: Buffer) => {
          if (err) return reject(err);
          // The status event follows the callback; wait for it.
          setImmediate(() => resolve({ value, head, status: status! }));
        },
      );
      call.on('metadata', (m: grpc.Metadata) => {
        head = m;
      });
      call.on('status', (s: grpc.StatusObject) => {
        status = s;
      });
    },
  ) as Promise<{ value: Buffer; head: grpc.Metadata; status: grpc.StatusObject }> & {
    call?: grpc.ClientUnaryCall;
  };
  p.call = call;
  return p;
}
