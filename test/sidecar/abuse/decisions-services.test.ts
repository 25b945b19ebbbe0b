/**
 * Decisions and routing that must fail closed, through real sidecars: a plugin decision whose `allow` is a getter
 * that changes between reads, service names from Object.prototype, and the statuses of a denied stream and of an
 * app that is down (with and without a request body).
 */
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dial, type End } from '../../../sdk/index.js';
import { streamMeta } from '../../../sidecar/proxy/stream-meta.js';
import { exchange, get } from '../../helpers/raw-http.js';
import { closesEmpty, tempDir, writePlugin } from '../../plugins/helpers.js';
import { type AbusePair, type PlainApp, startAbusePair, startPlainApp } from './helpers.js';

const GETTER = `
import { DECISION } from ${JSON.stringify(new URL('../../../plugins/index.ts', import.meta.url).pathname)};
export default definePlugin({
  name: 'shifty',
  hooks: {
    onRequest(facts) {
      if (!facts.path.startsWith('/shifty')) return allow();
      // false on the first read, true on every later one
      let reads = 0;
      return { [DECISION]: true, reason: 'shifty says no', get allow() { return reads++ > 0; } };
    },
  },
});`;

const STREAMS = `
export default definePlugin({
  name: 'streams',
  hooks: {
    onStream(facts) {
      if (facts.service === 'closed') return deny('closed service');
      if (facts.service === 'slow') return new Promise(() => {});
      return allow();
    },
  },
});`;

let app: PlainApp;
let pair: AbusePair;
let end: End;
let downPort: number;

beforeAll(async () => {
  app = await startPlainApp();
  const dir = tempDir();
  // A port nobody listens on: the app that is down.
  const probe = net.createServer();
  await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
  downPort = (probe.address() as net.AddressInfo).port;
  await new Promise((r) => probe.close(r));
  pair = await startAbusePair(app, {
    plugins: [
      { path: writePlugin(dir, 'shifty.ts', GETTER), timeoutMs: 2_000 },
      { path: writePlugin(dir, 'streams.ts', STREAMS), timeoutMs: 300 },
    ],
    services: {
      app: { target: app.url },
      closed: { target: app.url },
      slow: { target: app.url },
      down: { target: `http://127.0.0.1:${downPort}` },
    },
  });
  end = await dial(pair.geminio, { meta: JSON.stringify({ name: 'prober' }) });
});
afterAll(async () => {
  end?.destroy();
  pair?.close();
  await app?.close();
});

describe('a decision is read once', () => {
  it('allow as a getter (false, then true): denied 403, the app never sees it', async () => {
    const before = app.seen.length;
    const res = await fetch(`${pair.web}/shifty`);
    expect(res.status).toBe(403);
    expect(await res.json()).toEqual({ error: 'shifty says no', code: 'FORBIDDEN' });
    expect(app.seen.length).toBe(before);
  });
});

describe('service names from Object.prototype', () => {
  const NAMES = ['constructor', '__proto__', 'toString', 'hasOwnProperty', 'valueOf', '__defineGetter__'];

  it.each(NAMES)('"%s" over HTTP: 404 no such service, and the stream closes', async (name) => {
    const s = await end.openStream({ meta: streamMeta(name, 'http') });
    const closed = new Promise((r) => s.once('close', r));
    const [res] = await exchange(s, [get('/x')]);
    expect(res?.status).toBe(404);
    expect(JSON.parse(res!.body)).toEqual({ error: `no such service "${name}"`, code: 'NOT_FOUND' });
    await closed;
  });

  it.each(NAMES)('"%s" as a raw stream: reset at once, nothing delivered', async (name) => {
    const s = await end.openStream({ meta: streamMeta(name, 'tcp') });
    const empty = closesEmpty(s);
    s.write('hello');
    expect(await empty).toBe(true);
  });

  it('200 streams to prototype names all close (none leaks)', async () => {
    const closes = await Promise.all(
      Array.from({ length: 200 }, async (_, i) => {
        const s = await end.openStream({ meta: streamMeta(NAMES[i % NAMES.length]!, 'tcp') });
        return closesEmpty(s);
      }),
    );
    expect(closes.every(Boolean)).toBe(true);
  });
});

describe('statuses', () => {
  let down: AbusePair;
  beforeAll(async () => {
    down = await startAbusePair(app, {
      plugins: [{ path: writePlugin(tempDir(), 'streams.ts', STREAMS), timeoutMs: 300 }],
      services: {
        closed: { target: app.url },
        slow: { target: app.url },
        down: { target: `http://127.0.0.1:${downPort}` },
      },
      web: { service: 'closed' },
    });
  });
  afterAll(() => down?.close());

  it('a denied stream: 403 FORBIDDEN (GET and POST with a body), not 502', async () => {
    const g = await fetch(`${down.web}/x`);
    expect(g.status).toBe(403);
    expect(await g.json()).toEqual({ error: 'closed service', code: 'FORBIDDEN' });
    const p = await fetch(`${down.web}/x`, { method: 'POST', body: 'x'.repeat(64 * 1024) });
    expect(p.status).toBe(403);
    await p.text();
  });

  it('a stream whose decision times out: 503 AUTHZ_UNAVAILABLE', async () => {
    const s = await end.openStream({ meta: streamMeta('slow', 'http') });
    const [res] = await exchange(s, [get('/x')]);
    expect(res?.status).toBe(503);
    expect(JSON.parse(res!.body).code).toBe('AUTHZ_UNAVAILABLE');
  });

  it('app down: 503 TARGET_UNAVAILABLE without a body, with one, and chunked', async () => {
    const s = await end.openStream({ meta: streamMeta('down', 'http') });
    const post = (len: number) =>
      `POST /x HTTP/1.1\r\nhost: app\r\ncontent-length: ${len}\r\n\r\n${'b'.repeat(len)}`;
    const chunked =
      'POST /x HTTP/1.1\r\nhost: app\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n';
    for (const request of [get('/x'), post(1024), post(256 * 1024), chunked]) {
      const [res] = await exchange(
        s.destroyed ? await end.openStream({ meta: streamMeta('down', 'http') }) : s,
        [request],
      );
      expect(res?.status).toBe(503);
      expect(JSON.parse(res!.body).code).toBe('TARGET_UNAVAILABLE');
    }
  });
});
