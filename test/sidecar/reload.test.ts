/** Reload in process: unchanged listeners keep their connections; changed services and listeners take effect. */
import { Agent, request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../sidecar/config/load.js';
import { type App, type Pair, startApp, startPair } from './helpers.js';

let app: App;
let other: App;
let pair: Pair;

beforeAll(async () => {
  app = await startApp(1024);
  other = await startApp(1024);
  pair = await startPair(app, undefined);
});
afterAll(async () => {
  await pair?.close();
  await app?.close();
  await other?.close();
});

describe('reload', () => {
  it('a changed service target: keep-alive clients move to the new target without errors', async () => {
    const agent = new Agent({ connections: 1 });
    const get = async (path: string) => {
      const res = await request(`${pair.web}${path}`, { dispatcher: agent });
      return { status: res.statusCode, body: await res.body.text() };
    };
    expect((await get('/one')).status).toBe(200);
    const before = pair.inbound.config;
    await pair.inbound.reload(parseConfig({ ...before, services: { app: { target: other.url } } }));
    // Every request succeeds; the next ones reach the new target once the retired stream has closed.
    for (let i = 0; i < 20; i++) expect((await get(`/after${i}`)).status).toBe(200);
    const hitsBefore = app.hits;
    await new Promise((r) => setTimeout(r, 50));
    expect((await get('/settled')).status).toBe(200);
    expect(other.hits).toBeGreaterThan(0);
    expect(app.hits).toBe(hitsBefore); // the old target gets nothing new
    await agent.close();
  });

  it('a removed listener stops; an added one starts; the rest keep serving', async () => {
    const cfg = pair.outbound.config;
    await pair.outbound.reload(
      parseConfig({
        ...cfg,
        outbound: {
          ...cfg.outbound,
          http: [...cfg.outbound.http, { ...cfg.outbound.http[0]!, name: 'web2', listen: '127.0.0.1:0' }],
        },
      }),
    );
    const web2 = pair.outbound.listeners.get('web2')!.listener.address().port;
    expect((await request(`http://127.0.0.1:${web2}/x`)).statusCode).toBe(200);
    await pair.outbound.reload(parseConfig(cfg));
    expect(pair.outbound.listeners.has('web2')).toBe(false);
    await expect(request(`http://127.0.0.1:${web2}/x`)).rejects.toThrow();
    expect((await request(`${pair.web}/still`)).statusCode).toBe(200);
  });
});
