/**
 * The exchange proto between two sidecars (sidecar/proxy/exchange.ts, sidecar/inbound/exchange-service.ts): HTTP
 * exchanges on pooled persistent streams. Real sockets, a real Node app, undici and Node's http clients.
 */
import { createHash, randomBytes } from 'node:crypto';
import * as diagnostics from 'node:diagnostics_channel';
import http from 'node:http';
import http2 from 'node:http2';
import type net from 'node:net';
import { Readable } from 'node:stream';
import { Agent, request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CHANNELS } from '../../sdk/diag.js';
import { dial, type Stream } from '../../sdk/index.js';
import { routerSeams } from '../../sidecar/inbound/router.js';
import { encodeFrame, FrameType } from '../../sidecar/proxy/h2.js';
import { delay, eventually } from '../helpers/wait.js';
import { type App, MiB, metricValue, type Pair, startApp, startPair } from './helpers.js';

/** The app: a few routes the exchange tests need, beside the usual test app's. */
interface Extra {
  server: http.Server;
  url: string;
  aborted: string[];
  /** Bytes /stream wrote so far, and whether it waits for a drain. */
  written: number;
  blocked: boolean;
  /** Bytes /sink read so far; it reads only once `sinkOpen` is set. */
  sunk: number;
  sinkOpen: () => void;
  /** Requests /flaky got. */
  flaky: number;
  /** Requests /hang got (it never answers them). */
  hung: number;
}

const BIG = 32 * MiB;
const CHUNK = 64 * 1024;
const pattern = randomBytes(CHUNK);
/** The sha256 of BIG bytes of `pattern` repeated (what /stream sends and the /sink test posts). */
const BIG_SHA = (() => {
  const h = createHash('sha256');
  for (let i = 0; i < BIG / CHUNK; i++) h.update(pattern);
  return h.digest('hex');
})();

async function startExtra(): Promise<Extra> {
  const x = {
    aborted: [] as string[],
    written: 0,
    blocked: false,
    sunk: 0,
    flaky: 0,
    hung: 0,
  } as unknown as Extra;
  let openSink: () => void = () => {};
  const sinkOpened = new Promise<void>((r) => {
    openSink = r;
  });
  x.sinkOpen = () => openSink();
  const server = http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    req.once('close', () => {
      if (!res.writableFinished) x.aborted.push(path!);
    });
    switch (path) {
      case '/trailers':
        req.resume();
        res.writeHead(200, { 'content-type': 'text/plain', trailer: 'x-checksum' });
        res.write('part one, ');
        res.addTrailers({ 'x-checksum': 'abc123' });
        res.end('part two');
        return;
      case '/flaky': {
        // Every other request has its connection cut before any answer (a keep-alive connection closing under it).
        req.resume();
        x.flaky++;
        if (x.flaky % 2 === 1) {
          req.socket.destroy();
          return;
        }
        res.end('again');
        return;
      }
      case '/nocontent':
        req.resume();
        res.writeHead(204);
        res.end();
        return;
      case '/break':
        // Head and part of the body, then the connection is cut: the answer breaks off mid-way.
        req.resume();
        res.writeHead(200, { 'content-length': '100000' });
        res.write(Buffer.alloc(1000, 1));
        setTimeout(() => res.socket?.destroy(), 20);
        return;
      case '/stream': {
        // 32 MiB written as fast as the path takes it, never faster (it waits for each drain).
        req.resume();
        res.writeHead(200, { 'content-length': String(BIG) });
        const pump = () => {
          while (x.written < BIG) {
            x.written += CHUNK;
            if (!res.write(pattern)) {
              x.blocked = true;
              res.once('drain', () => {
                x.blocked = false;
                pump();
              });
              return;
            }
          }
          res.end();
        };
        pump();
        return;
      }
      case '/sink': {
        const h = createHash('sha256');
        req.pause();
        void sinkOpened.then(() => {
          req.on('data', (c: Buffer) => {
            x.sunk += c.length;
            h.update(c);
          });
          req.resume();
        });
        req.on('end', () => res.end(JSON.stringify({ sha256: h.digest('hex'), length: x.sunk })));
        return;
      }
      case '/stall':
        // A head and the first bytes, then nothing.
        req.resume();
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.write('first bytes');
        return;
      case '/hang':
        req.resume();
        x.hung++;
        return; // never answers; the client goes away
      default:
        req.resume();
        res.end('hi');
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  x.server = server;
  x.url = `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`;
  return x;
}

/** The streams opened and accepted in this process (both sidecars are here), with their protos. */
const opened: Array<{ stream: Stream; origin: string; proto: string | undefined }> = [];
const writes = new Map<Stream, number>();
function onOpen(m: unknown): void {
  const { stream, origin } = m as { stream: Stream; origin: string };
  let proto: string | undefined;
  try {
    proto = (JSON.parse(stream.meta.toString()) as { proto?: string }).proto;
  } catch {}
  opened.push({ stream, origin, proto });
}
function onBytesOut(m: unknown): void {
  const { stream } = m as { stream: Stream };
  writes.set(stream, (writes.get(stream) ?? 0) + 1);
}

let app: App;
let extra: Extra;
let pair: Pair;

beforeAll(async () => {
  diagnostics.subscribe(CHANNELS.streamOpen, onOpen);
  diagnostics.subscribe(CHANNELS.streamBytesOut, onBytesOut);
  app = await startApp(1024);
  extra = await startExtra();
  pair = await startPair(app, undefined, {
    services: {
      app: { target: app.url, headersTimeoutMs: 5_000 },
      extra: { target: extra.url },
    },
    outbound: {
      outbound: {
        http: [
          { name: 'web', listen: '127.0.0.1:0', upstream: 'up', service: 'app' },
          { name: 'extra', listen: '127.0.0.1:0', upstream: 'up', service: 'extra' },
        ],
      },
    },
  });
});

afterAll(async () => {
  diagnostics.unsubscribe(CHANNELS.streamOpen, onOpen);
  diagnostics.unsubscribe(CHANNELS.streamBytesOut, onBytesOut);
  await pair?.close();
  await app?.close();
  extra?.server.closeAllConnections();
  extra?.server.close();
});

function extraUrl(): string {
  const l = pair.outbound.listeners.get('extra')!.listener as unknown as { address(): net.AddressInfo };
  return `http://127.0.0.1:${l.address().port}`;
}

const exchangeStreams = (origin: string) =>
  opened.filter((o) => o.origin === origin && o.proto === 'exchange');

describe('the exchange proto', () => {
  it('200 sequential requests on fresh client connections use one exchange stream', async () => {
    const before = await metricValue(pair.outbound, 'geminio_streams_opened_total', { service: 'app' });
    for (let i = 0; i < 200; i++) {
      const agent = new Agent({ connections: 1 });
      const res = await request(`${pair.web}/seq${i}`, { dispatcher: agent });
      expect(((await res.body.json()) as { path: string }).path).toBe(`/seq${i}`);
      await agent.close();
    }
    const after = await metricValue(pair.outbound, 'geminio_streams_opened_total', { service: 'app' });
    // One stream for all of them (the first one also carried the HELLO probe), whichever was opened first.
    expect(after - before).toBeLessThanOrEqual(1);
    const mine = exchangeStreams('local').filter((o) => {
      const meta = JSON.parse(o.stream.meta.toString()) as { service: string };
      return meta.service === 'app';
    });
    expect(mine).toHaveLength(1);
    expect(opened.filter((o) => o.proto === 'http')).toHaveLength(0);
  });

  it('a small GET and a small POST are one stream write each way', async () => {
    const agent = new Agent({ connections: 1 });
    await (await request(`${pair.web}/warm`, { dispatcher: agent })).body.text();
    const stream = exchangeStreams('local').at(-1)!.stream;
    const far = exchangeStreams('remote').find((o) => o.stream.streamId === stream.streamId)!.stream;
    for (const [method, body] of [
      ['GET', undefined],
      ['POST', 'a small body'],
    ] as const) {
      const out0 = writes.get(stream) ?? 0;
      const in0 = writes.get(far) ?? 0;
      const res = await request(`${pair.web}/one`, { method, body, dispatcher: agent });
      expect(res.statusCode).toBe(200);
      await res.body.text();
      await delay(20); // let any straggling frame out before counting
      expect((writes.get(stream) ?? 0) - out0, `${method}: outbound writes`).toBe(1);
      expect((writes.get(far) ?? 0) - in0, `${method}: inbound writes`).toBe(1);
    }
    await agent.close();
  });

  it('trailers, HEAD and 204 come through, and the stream is reused after each', async () => {
    const base = extraUrl();
    const trailers = await new Promise<{ body: string; trailers: NodeJS.Dict<string> }>((resolve, reject) => {
      http
        .get(`${base}/trailers`, (res) => {
          let body = '';
          res.on('data', (c: Buffer) => {
            body += c.toString();
          });
          res.on('end', () => resolve({ body, trailers: res.trailers }));
        })
        .on('error', reject);
    });
    expect(trailers.body).toBe('part one, part two');
    expect(trailers.trailers['x-checksum']).toBe('abc123');

    const count = exchangeStreams('local').length;
    const head = await request(`${base}/hello`, { method: 'HEAD' });
    expect(head.statusCode).toBe(200);
    expect(await head.body.text()).toBe('');
    const none = await request(`${base}/nocontent`);
    expect(none.statusCode).toBe(204);
    expect(await none.body.text()).toBe('');
    const after = await request(`${base}/hello`);
    expect(await after.body.text()).toBe('hi');
    // Sequential exchanges: each found the stream idle again.
    expect(exchangeStreams('local').length - count).toBeLessThanOrEqual(1);
  });

  it('an answer that breaks off mid-way fails that request only; the next one is fine', async () => {
    const base = extraUrl();
    const broken = await request(`${base}/break`).then(
      (r) =>
        r.body.text().then(
          () => 'complete',
          () => 'broken',
        ),
      () => 'broken',
    );
    expect(broken).toBe('broken');
    for (let i = 0; i < 5; i++) {
      const res = await request(`${base}/hello`);
      expect(await res.body.text()).toBe('hi');
    }
  });

  it('the inbound sends a GET once more when the app cut the connection before answering; a POST is not replayed', async () => {
    const base = extraUrl();
    extra.flaky = 0;
    const res = await request(`${base}/flaky`);
    expect(res.statusCode).toBe(200);
    expect(await res.body.text()).toBe('again');
    expect(extra.flaky).toBe(2);
    extra.flaky = 0;
    const post = await request(`${base}/flaky`, { method: 'POST', body: 'x' });
    await post.body.text();
    expect(post.statusCode).toBe(502);
    expect(extra.flaky).toBe(1);
  });

  it('a client that goes away resets the exchange: the app sees the abort, the pool goes on', async () => {
    const base = extraUrl();
    const ac = new AbortController();
    const hung = extra.hung;
    const pending = request(`${base}/hang`, { signal: ac.signal }).catch(() => 'aborted');
    // The client goes away once the app has the request (aborted earlier, the app would have nothing to abort).
    await eventually(() => extra.hung > hung, 10_000, 'the app got /hang');
    ac.abort();
    expect(await pending).toBe('aborted');
    await eventually(() => {
      expect(extra.aborted).toContain('/hang');
      return true;
    }, 10_000);
    const res = await request(`${base}/hello`);
    expect(await res.body.text()).toBe('hi');
  });

  it('a 32 MiB answer to a client that stops reading is held by backpressure, not buffered whole', async () => {
    const base = extraUrl();
    const socketDone = new Promise<{ length: number; sha: string }>((resolve, reject) => {
      http
        .get(`${base}/stream`, (res) => {
          res.pause();
          const h = createHash('sha256');
          let n = 0;
          void (async () => {
            // Nothing read until the app is blocked on a drain: the whole path is full.
            await eventually(() => {
              expect(extra.blocked).toBe(true);
              return true;
            }, 20_000);
            await settle(() => extra.written);
            const mem = process.memoryUsage().arrayBuffers - base0;
            // What the app could write while nobody read (the windows and socket buffers of every hop; about
            // 9 MiB measured) is far less than the answer, and the heap did not take the answer whole.
            expect(extra.written).toBeLessThan(BIG / 2);
            expect(mem).toBeLessThan(BIG);
            res.on('data', (c: Buffer) => {
              n += c.length;
              h.update(c);
            });
            res.on('end', () => resolve({ length: n, sha: h.digest('hex') }));
            res.resume();
          })().catch(reject);
        })
        .on('error', reject);
    });
    const base0 = process.memoryUsage().arrayBuffers;
    const got = await socketDone;
    expect(got.length).toBe(BIG);
    expect(got.sha).toBe(BIG_SHA);
  }, 60_000);

  it('a 32 MiB request body to an app that does not read yet is held by backpressure', async () => {
    const base = extraUrl();
    let sent = 0;
    const body = Readable.from(
      (function* () {
        for (let i = 0; i < BIG / CHUNK; i++) {
          sent += CHUNK;
          yield pattern;
        }
      })(),
    );
    const base0 = process.memoryUsage().arrayBuffers;
    const answer = request(`${base}/sink`, { method: 'POST', body });
    await eventually(() => {
      expect(sent).toBeGreaterThan(0);
      return true;
    }, 10_000);
    await settle(() => sent);
    expect(sent).toBeLessThan(BIG / 2);
    expect(process.memoryUsage().arrayBuffers - base0).toBeLessThan(BIG);
    extra.sinkOpen();
    const res = await answer;
    const got = (await res.body.json()) as { sha256: string; length: number };
    expect(got.length).toBe(BIG);
    expect(got.sha256).toBe(BIG_SHA);
  }, 60_000);

  it('a malformed frame on an exchange stream closes that stream only', async () => {
    const end = await dial(`127.0.0.1:${pair.geminioPort}`, { meta: JSON.stringify({ name: 'bad' }) });
    try {
      const s = await end.openStream({ meta: JSON.stringify({ service: 'app', proto: 'exchange' }) });
      s.on('error', () => {});
      s.resume();
      const closed = new Promise((r) => s.once('close', r));
      // A HEAD frame whose payload is not JSON, then type 99.
      s.write(Buffer.concat([encodeFrame(FrameType.Head, '{not json'), Buffer.from([99, 0, 0, 0, 0])]));
      await closed;
      // Requests through the sidecars go on, during and after.
      const res = await request(`${pair.web}/after-bad`);
      expect(((await res.body.json()) as { path: string }).path).toBe('/after-bad');
      // A well-formed exchange on a raw stream is answered (the proto seen from outside).
      const ok = await end.openStream({ meta: JSON.stringify({ service: 'app', proto: 'exchange' }) });
      const chunks: Buffer[] = [];
      ok.on('data', (c: Buffer) => chunks.push(c));
      ok.write(
        Buffer.concat([
          encodeFrame(
            FrameType.Head,
            JSON.stringify({ method: 'GET', path: '/raw', headers: {}, body: false }),
          ),
          encodeFrame(FrameType.End),
        ]),
      );
      await eventually(() => {
        const all = Buffer.concat(chunks);
        expect(all.length).toBeGreaterThan(5);
        expect(all[all.length - 5]).toBe(FrameType.End);
        return true;
      }, 10_000);
      const all = Buffer.concat(chunks);
      expect(all[0]).toBe(FrameType.Head);
      const head = JSON.parse(all.subarray(5, 5 + all.readUInt32BE(1)).toString()) as { status: number };
      expect(head.status).toBe(200);
      expect(all.toString()).toContain('"/raw"');
      ok.destroy();
    } finally {
      await end.close();
    }
  });
});

describe('the timers of an exchange pool (one coarse timer per pool)', () => {
  let timed: Pair;
  beforeAll(async () => {
    timed = await startPair(app, undefined, {
      services: { app: { target: extra.url } },
      // keepAliveTimeoutMs is what the idle test reads the open stream within (a metrics scrape over HTTP after the
      // answer): 2 s, as a starved machine can take longer than 300 ms for that.
      web: { bodyTimeoutMs: 300, keepAliveTimeoutMs: 2_000 },
    });
  });
  afterAll(async () => {
    await timed?.close();
  });

  it('an answer that stalls past bodyTimeoutMs is cut; the app sees the abort; the next request is fine', async () => {
    const outcome = await request(`${timed.web}/stall`).then(
      (r) =>
        r.body.text().then(
          () => 'complete',
          () => 'cut',
        ),
      () => 'cut',
    );
    expect(outcome).toBe('cut');
    await eventually(() => extra.aborted.includes('/stall'), 10_000, 'the app saw the abort');
    const res = await request(`${timed.web}/hello`);
    expect(await res.body.text()).toBe('hi');
  });

  it('an idle stream is closed after keepAliveTimeoutMs; the next request opens a new one', async () => {
    const res = await request(`${timed.web}/hello`);
    expect(await res.body.text()).toBe('hi');
    const open = () => metricValue(timed.outbound, 'geminio_streams_open', { service: 'app' });
    expect(await open()).toBeGreaterThan(0);
    await eventually(async () => (await open()) === 0, 10_000, 'the idle stream closed');
    const opened = await metricValue(timed.outbound, 'geminio_streams_opened_total', { service: 'app' });
    const again = await request(`${timed.web}/hello`);
    expect(await again.body.text()).toBe('hi');
    expect(await metricValue(timed.outbound, 'geminio_streams_opened_total', { service: 'app' })).toBe(
      opened + 1,
    );
  });
});

describe('an outbound sidecar from before the exchange proto', () => {
  it('its "http" streams (HTTP/1.1 bytes) and "h2" streams (one framed request each) are still served', async () => {
    const end = await dial(`127.0.0.1:${pair.geminioPort}`, { meta: JSON.stringify({ name: 'old' }) });
    try {
      const h1 = await end.openStream({ meta: JSON.stringify({ service: 'app', proto: 'http' }) });
      let text = '';
      h1.on('data', (c: Buffer) => {
        text += c.toString();
      });
      h1.write('GET /old-h1 HTTP/1.1\r\nhost: app\r\nconnection: close\r\n\r\n');
      await new Promise((r) => h1.once('close', r));
      expect(text).toMatch(/^HTTP\/1\.1 200/);
      expect(text).toContain('"/old-h1"');

      const h2 = await end.openStream({ meta: JSON.stringify({ service: 'app', proto: 'h2' }) });
      const chunks: Buffer[] = [];
      h2.on('data', (c: Buffer) => chunks.push(c));
      h2.write(
        Buffer.concat([
          encodeFrame(FrameType.Head, JSON.stringify({ method: 'GET', path: '/old-h2', headers: {} })),
          encodeFrame(FrameType.End),
        ]),
      );
      // One request, then the inbound ends the stream.
      await new Promise((r) => h2.once('end', r));
      const all = Buffer.concat(chunks);
      expect(all[0]).toBe(FrameType.Head);
      expect(
        (JSON.parse(all.subarray(5, 5 + all.readUInt32BE(1)).toString()) as { status: number }).status,
      ).toBe(200);
      expect(all.toString()).toContain('"/old-h2"');
      expect(all[all.length - 5]).toBe(FrameType.End);
    } finally {
      await end.close();
    }
  });
});

describe('an inbound sidecar from before the exchange proto', () => {
  let old: Pair;
  beforeAll(async () => {
    routerSeams.exchange = false;
    old = await startPair(app, undefined);
  });
  afterAll(async () => {
    routerSeams.exchange = true;
    await old?.close();
  });

  it('the first HELLO is answered with HTTP: the endpoint falls back to http and h2 streams', async () => {
    const first = opened.length;
    for (let i = 0; i < 5; i++) {
      const res = await request(`${old.web}/old${i}`, {
        method: i % 2 ? 'POST' : 'GET',
        body: i % 2 ? 'x' : undefined,
      });
      expect(res.statusCode).toBe(200);
      expect(((await res.body.json()) as { path: string }).path).toBe(`/old${i}`);
    }
    const mine = opened.slice(first).filter((o) => o.origin === 'local');
    expect(mine[0]?.proto).toBe('exchange'); // the probe
    expect(mine.filter((o) => o.proto === 'exchange')).toHaveLength(1);
    expect(mine.filter((o) => o.proto === 'http').length).toBeGreaterThanOrEqual(1);
    // HTTP/2 to the same endpoint goes on "h2" streams.
    const session = http2.connect(old.web);
    try {
      const body = await new Promise<string>((resolve, reject) => {
        const r = session.request({ ':path': '/h2-old' });
        let text = '';
        r.on('data', (c: Buffer) => {
          text += c.toString();
        });
        r.on('end', () => resolve(text));
        r.on('error', reject);
        r.end();
      });
      expect(JSON.parse(body)).toMatchObject({ path: '/h2-old' });
    } finally {
      session.close();
    }
    expect(opened.slice(first).some((o) => o.origin === 'local' && o.proto === 'h2')).toBe(true);
  });
});

/** Waits until `value()` stops changing (the path is full), checking every 100 ms; not a timing assertion. */
async function settle(value: () => number): Promise<void> {
  let last = -1;
  let same = 0;
  while (same < 5) {
    await delay(100);
    const v = value();
    same = v === last ? same + 1 : 0;
    last = v;
  }
}
