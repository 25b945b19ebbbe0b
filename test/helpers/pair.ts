import { createHash, randomBytes } from 'node:crypto';
import { Duplex, type Readable } from 'node:stream';
import {
  type DialOptions,
  dial,
  type End,
  type Listener,
  type ListenOptions,
  listen,
} from '../../sdk/index.js';

/** A listener on a free loopback port, a client End dialled to it and the server End it accepted. */
export async function tcpPair(
  clientOptions: DialOptions = {},
  serverOptions: ListenOptions = {},
): Promise<{ client: End; server: End; listener: Listener; cleanup: () => Promise<void> }> {
  const listener = await listen('127.0.0.1:0', serverOptions);
  const [client, server] = await Promise.all([dial(listener.address(), clientOptions), listener.acceptEnd()]);
  const cleanup = async () => {
    client.destroy();
    server.destroy();
    await listener.close();
  };
  return { client, server, listener, cleanup };
}

/** Two connected in-memory Duplexes: what one writes, the other reads. */
export function duplexPair(): [Duplex, Duplex] {
  let a: Duplex;
  let b: Duplex;
  const make = (peer: () => Duplex) =>
    new Duplex({
      read() {},
      write(chunk, _enc, cb) {
        peer().push(chunk);
        cb();
      },
      final(cb) {
        peer().push(null);
        cb();
      },
      destroy(err, cb) {
        const p = peer();
        if (!p.destroyed) p.destroy();
        cb(err);
      },
    });
  a = make(() => b);
  b = make(() => a);
  return [a, b];
}

export function sha256(data: Buffer | Buffer[]): string {
  const h = createHash('sha256');
  for (const d of Array.isArray(data) ? data : [data]) h.update(d);
  return h.digest('hex');
}

/** Reads a stream to its end and returns the bytes. */
export async function readAll(stream: NodeJS.ReadableStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream as AsyncIterable<Buffer>) chunks.push(c);
  return Buffer.concat(chunks);
}

export { delay, nextEvent, once } from './wait.js';
export { randomBytes };

/** Reads exactly `n` bytes (at least; what arrives in the last chunk is kept) without waiting for the end. */
export function readExactly(stream: Readable, n: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let got = 0;
    const onData = (c: Buffer) => {
      chunks.push(c);
      got += c.length;
      if (got >= n) {
        stream.off('data', onData);
        stream.off('error', reject);
        stream.pause();
        resolve(Buffer.concat(chunks));
      }
    };
    stream.on('data', onData);
    stream.once('error', reject);
  });
}
