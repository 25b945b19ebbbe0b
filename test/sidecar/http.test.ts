/**
 * Outbound HTTP -> geminio stream -> inbound HTTP -> a real Node app, with real clients (undici, curl, ws).
 */
import { execFile, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import http from 'node:http';
import { Readable } from 'node:stream';
import { promisify } from 'node:util';
import { Agent, request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { Sidecar } from '../../sidecar/main.js';
import type { Hook } from '../../sidecar/policy/hooks.js';
import { eventually } from '../helpers/wait.js';
import {
  type App,
  inboundConfig,
  MiB,
  memoryLogger,
  metricValue,
  type Pair,
  quiet,
  sha256,
  startApp,
  startPair,
} from './helpers.js';

const curlAvailable = spawnSync('curl', ['--version'], { stdio: 'ignore' }).status === 0;
const run = promisify(execFile);

let app: App;
let pair: Pair;
const { logger: outLogger, lines: outLines } = memoryLogger();
// A test-only hook: denies requests to /forbidden (the plugin system will install real ones).
const denyForbidden: Hook = (point, facts) =>
  point === 'request' && facts.path === '/forbidden'
    ? { allow: false, status: 403, reason: 'test hook says no' }
    : undefined;

beforeAll(async () => {
  app = await startApp();
  pair = await startPair(app, undefined, { outboundHooks: [denyForbidden], outboundLogger: outLogger });
});
afterAll(async () => {
  await pair?.close();
  await app?.close();
});

describe('outbound HTTP through geminio', () => {
  it('GET streams a 50 MiB body intact', async () => {
    const res = await request(`${pair.web}/big`);
    expect(res.statusCode).toBe(200);
    const h = createHash('sha256');
    let n = 0;
    for await (const c of res.body) {
      h.update(c);
      n += c.length;
    }
    expect(n).toBe(50 * MiB);
    expect(h.digest('hex')).toBe(sha256(app.big));
  });

  it('POST streams a 50 MiB body intact, with and without content-length (chunked)', async () => {
    const body = app.big;
    const withLength = await request(`${pair.web}/sha`, {
      method: 'POST',
      body: Readable.from(chunks(body, 1 * MiB)),
      headers: { 'content-length': String(body.length) },
    });
    expect(await withLength.body.json()).toEqual({ sha256: sha256(body), length: body.length, te: null });
    const chunked = await request(`${pair.web}/sha`, {
      method: 'POST',
      body: Readable.from(chunks(body, 3 * MiB)),
    });
    expect(await chunked.body.json()).toEqual({ sha256: sha256(body), length: body.length, te: 'chunked' });
  });

  it('passes a chunked response', async () => {
    const res = await request(`${pair.web}/chunked`);
    expect(res.headers['transfer-encoding']).toBe('chunked');
    expect(await res.body.text()).toBe('chunk 0\nchunk 1\nchunk 2\nchunk 3\nchunk 4\n');
  });

  it('reuses streams for keep-alive: fewer streams than requests', async () => {
    const fresh = await startPair(app, undefined);
    try {
      const agent = new Agent({ connections: 1 });
      for (let i = 0; i < 20; i++) {
        const res = await request(`${fresh.web}/k${i}`, { dispatcher: agent });
        expect((await res.body.json()) as object).toMatchObject({ path: `/k${i}` });
      }
      await agent.close();
      const opened = await metricValue(fresh.outbound, 'geminio_streams_opened_total', { service: 'app' });
      expect(opened).toBeGreaterThanOrEqual(1);
      expect(opened).toBeLessThan(20);
      // The inbound side saw the same streams accepted.
      expect(await metricValue(fresh.inbound, 'geminio_streams_opened_total', { direction: 'inbound' })).toBe(
        opened,
      );
    } finally {
      await fresh.close();
    }
  });

  it('500 concurrent requests over one upstream connection', async () => {
    const agent = new Agent({ connections: 600 });
    const clientId = String(pair.outbound.upstreams.get('up')!.current()!.clientId);
    const results = await Promise.all(
      Array.from({ length: 500 }, async (_, i) => {
        const res = await request(`${pair.web}/c${i}`, { dispatcher: agent });
        return {
          status: res.statusCode,
          body: (await res.body.json()) as { path: string; clientId: string },
        };
      }),
    );
    await agent.close();
    expect(
      results.every((r, i) => r.status === 200 && r.body.path === `/c${i}` && r.body.clientId === clientId),
    ).toBe(true);
    expect(pair.inbound.inbound!.ends.size).toBe(1); // one geminio connection carried them all
  });

  it('a WebSocket echo through the path', async () => {
    const ws = new WebSocket(`${pair.web.replace('http', 'ws')}/ws`);
    await new Promise((resolve, reject) => {
      ws.once('open', resolve);
      ws.once('error', reject);
    });
    const got: string[] = [];
    const done = new Promise<void>((resolve) =>
      ws.on('message', (d) => {
        got.push(d.toString());
        if (got.length === 3) resolve();
      }),
    );
    ws.send('one');
    ws.send('two');
    ws.send(Buffer.alloc(200_000, 'x'));
    await done;
    expect(got.slice(0, 2)).toEqual(['one', 'two']);
    expect(got[2]).toHaveLength(200_000);
    ws.close();
  });

  it.skipIf(!curlAvailable)('curl: Expect: 100-continue passes, body arrives', async () => {
    const { stdout } = await run('curl', [
      '-sS',
      '-H',
      'Expect: 100-continue',
      '--data-binary',
      'x'.repeat(2048),
      `${pair.web}/sha`,
    ]);
    expect(JSON.parse(stdout)).toMatchObject({ length: 2048, sha256: sha256(Buffer.alloc(2048, 'x')) });
  });

  it('a test hook that denies: 403 JSON, a metric and a log line', async () => {
    const res = await request(`${pair.web}/forbidden`);
    expect(res.statusCode).toBe(403);
    expect(await res.body.json()).toEqual({ error: 'test hook says no', code: 'FORBIDDEN' });
    expect(
      await metricValue(pair.outbound, 'geminio_authz_decisions_total', {
        direction: 'outbound',
        hook: 'request',
        plugin: 'hook',
        decision: 'deny',
      }),
    ).toBe(1);
    expect(outLines.some((l) => l.msg === 'hook denied' && l.reason === 'test hook says no')).toBe(true);
    expect(outLines.some((l) => l.msg === 'access' && l.path === '/forbidden' && l.status === 403)).toBe(
      true,
    );
  });

  it('a client that disconnects aborts the upstream side', async () => {
    const req = http.get(`${pair.web}/slow?ms=3000`);
    req.on('error', () => {});
    await new Promise((r) => setTimeout(r, 300));
    req.destroy();
    await eventually(() => app.aborted.includes('/slow'), 5_000, 'the app to see the abort');
  });

  it('an upstream answer slower than headersTimeoutMs: 504 JSON', async () => {
    const slow = await startPair(app, undefined, { web: { headersTimeoutMs: 200 } });
    try {
      const res = await request(`${slow.web}/slow?ms=1500`);
      expect(res.statusCode).toBe(504);
      expect(await res.body.json()).toMatchObject({ code: 'UPSTREAM_TIMEOUT' });
    } finally {
      await slow.close();
    }
  });

  it('an unknown service: 404 JSON from the inbound side', async () => {
    const other = await startPair(app, undefined, { web: { service: 'nope' } });
    try {
      const res = await request(`${other.web}/x`);
      expect(res.statusCode).toBe(404);
      expect(await res.body.json()).toEqual({ error: 'no such service "nope"', code: 'NOT_FOUND' });
    } finally {
      await other.close();
    }
  });

  it('upstream down: 503 JSON at once; after the reconnect, 200 again', async () => {
    const p = await startPair(app, undefined);
    try {
      expect((await request(`${p.web}/before`)).statusCode).toBe(200);
      await p.inbound.shutdown(0);
      await eventually(() => p.outbound.upstreams.get('up')!.state === 'reconnecting', 5_000, 'disconnect');
      const down = await request(`${p.web}/during`);
      expect(down.statusCode).toBe(503);
      expect(await down.body.json()).toMatchObject({ code: 'UPSTREAM_UNAVAILABLE' });
      const ready = await request(
        p.outbound.admin!.address().port ? `http://127.0.0.1:${p.outbound.admin!.address().port}/readyz` : '',
      );
      expect(ready.statusCode).toBe(503);
      await ready.body.dump();
      // A new inbound sidecar on the same port: the upstream End reconnects by itself.
      const again = new Sidecar(inboundConfig({ app: { target: app.url } }, {}, p.geminioPort), {
        logger: quiet(),
      });
      await again.start();
      try {
        await p.outbound.upstreams.get('up')!.waitConnected(10_000);
        const after = await request(`${p.web}/after`);
        expect(after.statusCode).toBe(200);
        expect(await metricValue(p.outbound, 'geminio_upstream_reconnects_total')).toBe(1);
      } finally {
        again.destroy();
      }
    } finally {
      await p.close();
    }
  });

  it('admin: /healthz, /readyz, /debug/ends and /metrics', async () => {
    const admin = `http://127.0.0.1:${pair.outbound.admin!.address().port}`;
    expect((await (await fetch(`${admin}/healthz`)).json()) as object).toEqual({ status: 'ok' });
    expect((await fetch(`${admin}/readyz`)).status).toBe(200);
    const ends = (await (await fetch(`${admin}/debug/ends`)).json()) as {
      upstreams: Array<{ clientId: string; state: string }>;
    };
    expect(ends.upstreams[0]).toMatchObject({ state: 'connected', clientId: expect.stringMatching(/^\d+$/) });
    const inboundAdmin = `http://127.0.0.1:${pair.inbound.admin!.address().port}`;
    const inEnds = (await (await fetch(`${inboundAdmin}/debug/ends`)).json()) as {
      inbound: Array<{ name: string }>;
    };
    expect(inEnds.inbound[0]).toMatchObject({ name: 'outbound' });
    const metrics = await (await fetch(`${admin}/metrics`)).text();
    for (const name of [
      'geminio_upstream_connected{upstream="up"} 1',
      'geminio_http_requests_total{listener="web",service="app",upstream="up",method="GET",status="200",status_class="2xx"}',
      'geminio_http_request_duration_seconds_bucket',
      'geminio_stream_bytes_total{direction="outbound",service="app",flow="rx"}',
      'process_cpu_user_seconds_total',
    ]) {
      expect(metrics).toContain(name);
    }
  });
});

function* chunks(buf: Buffer, size: number): Generator<Buffer> {
  for (let off = 0; off < buf.length; off += size) yield buf.subarray(off, off + size);
}
