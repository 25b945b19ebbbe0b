/**
 * Every metric label is bounded: a flood of unknown methods, paths, RPC methods, topics, request IDs, user agents
 * and services (streams for services nobody configured) adds no series once each kind was seen once. Measured on
 * the `geminio_` series of both sidecars of a real pair.
 */
import { connect } from 'node:net';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dial, type End } from '../../sdk/index.js';
import type { Sidecar } from '../../sidecar/main.js';
import { streamMeta } from '../../sidecar/proxy/stream-meta.js';
import { exchange, get } from '../helpers/raw-http.js';
import { type App, type Pair, startApp, startPair } from './helpers.js';

async function seriesCount(s: Sidecar): Promise<number> {
  const text = await s.metrics.registry.metrics();
  return text.split('\n').filter((l) => l.startsWith('geminio_')).length;
}

/** One raw request with an arbitrary method (Node's parser refuses the unknown ones: a 400 each). */
function rawMethod(port: number, method: string, path: string): Promise<void> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1', () =>
      s.write(`${method} ${path} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n`),
    );
    s.on('data', () => {});
    s.on('close', () => resolve());
    s.on('error', () => resolve());
  });
}

describe('metric labels stay bounded under a flood of unknown values', () => {
  let app: App;
  let pair: Pair;
  let end: End;

  beforeAll(async () => {
    app = await startApp(1024);
    pair = await startPair(app, undefined);
    end = await dial(`127.0.0.1:${pair.geminioPort}`, { meta: JSON.stringify({ name: 'flooder' }) });
  });
  afterAll(async () => {
    end?.destroy();
    await pair?.close();
    await app?.close();
  });

  async function flood(round: number): Promise<void> {
    const port = Number(new URL(pair.web).port);
    for (let i = 0; i < 15; i++) {
      const tag = `${round}x${i}`;
      await rawMethod(port, `FLOOD${tag}`, `/m/${tag}`);
      await rawMethod(port, 'PROPFIND', `/dav/${tag}`);
      for (const [path, method, body] of [
        [`/path/${tag}?q=${tag}`, 'GET', undefined],
        [`/rpc/method-${tag}`, 'POST', 'x'],
        [`/publish/topic-${tag}`, 'POST', 'x'],
      ] as const) {
        const res = await request(`${pair.web}${path}`, {
          method,
          body,
          headers: { 'x-request-id': `rid-${tag}`, 'user-agent': `ua-${tag}`, host: `host-${tag}` },
        });
        await res.body.text();
      }
      const s = await end.openStream({ meta: streamMeta(`service-${tag}`, 'http') });
      const [res] = await exchange(s, [get('/x')]);
      expect(res?.status).toBe(404);
      s.destroy();
    }
  }

  it('the number of series after a second flood is what it was after the first', async () => {
    await flood(1);
    const outbound = await seriesCount(pair.outbound);
    const inbound = await seriesCount(pair.inbound);
    await flood(2);
    expect(await seriesCount(pair.outbound)).toBe(outbound);
    expect(await seriesCount(pair.inbound)).toBe(inbound);
    // And the flood was seen: the unknown methods are counted as OTHER, the RPC methods as unknown.
    const text = await pair.outbound.metrics.registry.metrics();
    expect(text).toMatch(/geminio_http_requests_total\{[^}]*method="OTHER"[^}]*\} [1-9]/);
    expect(text).toMatch(/geminio_rpc_calls_total\{direction="outbound",method="unknown"/);
    expect(text).not.toMatch(/FLOOD|topic-|method-|rid-|ua-|host-|service-1x|\/path\//);
  });
});
