/**
 * Misbehaving HTTP/2 peers on an outbound listener (issue 16): a rapid-reset flood (HEADERS then RST_STREAM, as in
 * CVE-2023-44487), a SETTINGS flood, an oversized header block, and a client that never reads a large answer. In
 * each case the sidecar stays up, its memory stays bounded, and another client's gRPC call still succeeds.
 */
import http2 from 'node:http2';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { delay, eventually } from '../../helpers/wait.js';
import { type EchoClient, type EchoServer, echoClient, startEchoServer, unary } from '../grpc-helpers.js';
import { type App, MiB, type Pair, startApp, startPair } from '../helpers.js';

let app: App;
let echo: EchoServer;
let pair: Pair;
let port: number;
let good: EchoClient;

beforeAll(async () => {
  app = await startApp(1024);
  echo = await startEchoServer();
  pair = await startPair(app, undefined, {
    services: { grpc: { target: `h2c://127.0.0.1:${echo.port}` } },
    // An idle (or silently dropped) HTTP/2 session is closed after this.
    web: { service: 'grpc', keepAliveTimeoutMs: 2_000 },
  });
  port = Number(new URL(pair.web).port);
  good = echoClient(port);
}, 30_000);

afterAll(async () => {
  good?.close();
  await pair?.close();
  await echo?.close();
  await app?.close();
});

/** Another client's call works. */
async function othersUnaffected(): Promise<void> {
  const r = await unary(good, 'unary', Buffer.from('still here'));
  expect(r.value.toString()).toBe('still here');
}

function frame(type: number, flags: number, streamId: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const h = Buffer.alloc(9);
  h.writeUIntBE(payload.length, 0, 3);
  h[3] = type;
  h[4] = flags;
  h.writeUInt32BE(streamId, 5);
  return Buffer.concat([h, payload]);
}
const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

describe('misbehaving HTTP/2 peers', () => {
  it('a rapid-reset flood (5,000 HEADERS + RST_STREAM): no outage, calls in flight drain to 0', async () => {
    const rss0 = process.memoryUsage().rss;
    const session = http2.connect(`http://127.0.0.1:${port}`);
    session.on('error', () => {});
    for (let i = 0; i < 5_000 && !session.destroyed; i++) {
      const req = session.request(
        { ':method': 'POST', ':path': '/test.Echo/Hang', 'content-type': 'application/grpc', te: 'trailers' },
        { endStream: false },
      );
      req.on('error', () => {});
      req.close(http2.constants.NGHTTP2_CANCEL);
      if (i % 100 === 0) await delay(0);
    }
    await othersUnaffected();
    // Every reset call is gone on both sidecars (nothing left open by the flood).
    await eventually(() => expect(pair.outbound.inflight.size).toBe(0), 20_000);
    await eventually(() => expect(pair.inbound.inflight.size).toBe(0), 20_000);
    session.destroy();
    expect(process.memoryUsage().rss - rss0).toBeLessThan(256 * MiB);
  }, 60_000);

  it('a SETTINGS flood (20,000 frames, never reading the ACKs): memory bounded, others unaffected', async () => {
    const sock = net.connect(port, '127.0.0.1');
    sock.on('error', () => {});
    await new Promise<void>((r) => sock.once('connect', () => r()));
    sock.write(PREFACE);
    sock.pause(); // never read: the ACKs pile up at the sidecar until it gives up on this peer
    const settings = frame(4, 0, 0);
    const burst = Buffer.concat(Array.from({ length: 1_000 }, () => settings));
    for (let i = 0; i < 20 && !sock.destroyed; i++) {
      sock.write(burst);
      await delay(5);
    }
    await othersUnaffected();
    const rss = process.memoryUsage().rss;
    await delay(500);
    // Measured, not asserted: whether the sidecar cut the flooder (nghttp2 bounds its queue of ACKs either way).
    console.log(`settings flood: connection cut by the sidecar: ${sock.destroyed || sock.readableEnded}`);
    expect(process.memoryUsage().rss - rss).toBeLessThan(64 * MiB);
    sock.destroy();
    await othersUnaffected();
  }, 60_000);

  it('an oversized header block (64 KiB of headers against a 32 KiB limit) is refused, the session survives', async () => {
    const session = http2.connect(`http://127.0.0.1:${port}`);
    session.on('error', () => {});
    const req = session.request({ ':path': '/test.Echo/Unary', 'x-big': 'a'.repeat(64 * 1024) });
    const outcome = await new Promise<string>((resolve) => {
      req.on('response', (h) => resolve(`status ${h[':status']}`));
      req.on('error', (e: Error) => resolve(`error ${e.message}`));
      req.on('close', () => resolve(`closed ${req.rstCode}`));
      req.end();
    });
    expect(outcome).not.toBe('status 200');
    session.destroy();
    await othersUnaffected();
  }, 30_000);

  it('a client that never reads a 256 MiB streamed answer: memory stays bounded (< 96 MiB), others served', async () => {
    const rss0 = process.memoryUsage().rss;
    // A raw HTTP/2 client (grpc-js buffers a paused call's messages itself): the request is a gRPC frame, the
    // stream is paused and never read, so only HTTP/2 flow control holds the answer back.
    const session = http2.connect(`http://127.0.0.1:${port}`);
    session.on('error', () => {});
    const msg = Buffer.from(`4096x${64 * 1024}`);
    const head = Buffer.alloc(5);
    head.writeUInt32BE(msg.length, 1);
    const req = session.request({
      ':method': 'POST',
      ':path': '/test.Echo/ServerStream',
      'content-type': 'application/grpc',
      te: 'trailers',
    });
    req.on('error', () => {});
    req.pause();
    req.end(Buffer.concat([head, msg]));
    let status = 0;
    req.on('response', (h) => {
      status = Number(h[':status']);
    });
    // The answer starts (the app is writing into the held windows), however long that takes on a loaded machine;
    // then the windows on each hop have time to fill before memory is read.
    await eventually(() => status === 200, 20_000, 'the answer started');
    await delay(1_500);
    await othersUnaffected();
    const grown = process.memoryUsage().rss - rss0;
    // The client just drops its connection (no RST_STREAM): the call is reset on both sidecars all the same,
    // at the latest when the session's idle timeout (keepAliveTimeoutMs) ends it.
    session.destroy();
    // The whole answer would be 256 MiB; windows on each hop hold only a few MiB of it.
    expect(grown).toBeLessThan(96 * MiB);
    await eventually(() => expect(pair.outbound.inflight.size).toBe(0), 20_000);
    await eventually(() => expect(pair.inbound.inflight.size).toBe(0), 20_000);
  }, 60_000);
});
