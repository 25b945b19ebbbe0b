/**
 * Fail closed: on every hook, a plugin that throws, rejects, hangs or returns garbage denies — with the answer the
 * issue specifies for that hook, one metric increment and one structured log line per decision.
 */

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dial, type End } from '../../sdk/index.js';
import type { Sidecar } from '../../sidecar/main.js';
import { streamMeta } from '../../sidecar/proxy/stream-meta.js';
import { exchange, get } from '../helpers/raw-http.js';
import { type App, memoryLogger, metricValue, startApp } from '../sidecar/helpers.js';
import { closesEmpty, geminioAddress, httpStream, startInbound, tempDir, writePlugin } from './helpers.js';

type Mode = 'throw' | 'reject' | 'hang' | 'garbage';
const control = globalThis as unknown as { __authzFail?: { hook: string; mode: Mode } };

const PLUGIN = `
const act = (hook) => {
  const f = globalThis.__authzFail;
  if (!f || f.hook !== hook) return allow();
  if (f.mode === 'throw') throw new Error('boom in ' + hook);
  if (f.mode === 'reject') return Promise.reject(new Error('rejected in ' + hook));
  if (f.mode === 'hang') return new Promise(() => {});
  return { allow: true }; // looks like a decision, is not one
};
export default definePlugin({
  name: 'ctl',
  hooks: {
    onConnect: () => act('onConnect'),
    onStream: () => act('onStream'),
    onRequest: () => act('onRequest'),
    onRpc: () => act('onRpc'),
    onMessage: () => act('onMessage'),
  },
});`;

let app: App;
let inbound: Sidecar;
const log = memoryLogger('info');
const MODES: Mode[] = ['throw', 'reject', 'hang', 'garbage'];

beforeAll(async () => {
  app = await startApp(1024);
  const dir = tempDir();
  writePlugin(dir, 'ctl.ts', PLUGIN);
  inbound = await startInbound(app, {
    plugins: [{ path: './ctl.ts', timeoutMs: 100 }],
    configDir: dir,
    logger: log.logger,
  });
});
afterAll(async () => {
  delete control.__authzFail;
  inbound?.destroy();
  await app?.close();
});

async function client(): Promise<End> {
  return dial(geminioAddress(inbound), { meta: JSON.stringify({ name: 'c' }) });
}

async function withFailure<T>(hook: string, mode: Mode, fn: () => Promise<T>): Promise<T> {
  control.__authzFail = { hook, mode };
  try {
    return await fn();
  } finally {
    delete control.__authzFail;
  }
}

async function denials(hook: string): Promise<number> {
  return metricValue(inbound, 'geminio_authz_decisions_total', { hook, plugin: 'ctl', decision: 'deny' });
}

describe('every failure mode denies, on every hook', () => {
  it.each(MODES)('onConnect %s: error ConnAck, the connection closes', async (mode) => {
    const before = await denials('connect');
    const err = await withFailure('onConnect', mode, () =>
      client().then(
        () => undefined,
        (e: Error) => e,
      ),
    );
    expect(err?.name).toBe('HandshakeRejectedError');
    expect(err?.message).toMatch(mode === 'hang' ? /authorization timed out/ : /authorization failed/);
    expect(await denials('connect')).toBe(before + 1);
    expect(
      await metricValue(inbound, 'geminio_authz_failures_total', { hook: 'connect', kind: kindOf(mode) }),
    ).toBeGreaterThan(0);
  });

  it.each(MODES)(
    'onStream %s: an HTTP stream gets 403 (503 on timeout) and closes; the service never sees it',
    async (mode) => {
      const end = await client();
      const hits = app.hits;
      const stream = await withFailure('onStream', mode, async () => {
        const s = await httpStream(end);
        const closed = new Promise((r) => s.once('close', r));
        const [res] = await exchange(s, [get('/x')]);
        expect(res?.status).toBe(mode === 'hang' ? 503 : 403);
        expect(res?.headers.connection).toBe('close');
        await closed;
        return s;
      });
      expect(stream.destroyed).toBe(true);
      expect(app.hits).toBe(hits);
      await end.close();
    },
  );

  it.each(MODES)('onStream %s: a stream that is not HTTP is reset', async (mode) => {
    const end = await client();
    const hits = app.hits;
    await withFailure('onStream', mode, async () => {
      const s = await end.openStream({ meta: streamMeta('app', 'tcp') });
      const empty = closesEmpty(s);
      s.write(get('/x'));
      expect(await empty).toBe(true);
    });
    expect(app.hits).toBe(hits);
    await end.close();
  });

  it.each(MODES)('onRequest %s: HTTP 403 (503 on timeout) with a JSON reason', async (mode) => {
    const end = await client();
    const stream = await httpStream(end);
    const hits = app.hits;
    const [res] = await withFailure('onRequest', mode, () => exchange(stream, [get('/x')]));
    expect(res?.status).toBe(mode === 'hang' ? 503 : 403);
    expect(JSON.parse(res!.body)).toEqual(
      mode === 'hang'
        ? { error: 'authorization timed out', code: 'AUTHZ_UNAVAILABLE' }
        : { error: 'authorization failed', code: 'FORBIDDEN' },
    );
    expect(app.hits).toBe(hits);
    // The same stream carries on once the plugin behaves.
    const [ok] = await exchange(stream, [get('/y')]);
    expect(ok?.status).toBe(200);
    await end.close();
  });

  it.each(MODES)('onRpc %s: the call gets an error response', async (mode) => {
    const end = await client();
    const err = await withFailure('onRpc', mode, () =>
      end.call('time', 'x', { timeout: 5_000 }).then(
        () => undefined,
        (e: Error) => e,
      ),
    );
    expect(err?.name).toBe('RemoteError');
    expect(err?.message).toMatch(/denied: authorization (failed|timed out)/);
    expect((await end.call('time', 'x', { timeout: 5_000 })).data.toString()).toBe('12:00');
    await end.close();
  });

  it.each(MODES)('onMessage %s: the publish gets an error ack, the webhook never sees it', async (mode) => {
    const end = await client();
    const delivered = app.webhook.length;
    const err = await withFailure('onMessage', mode, () =>
      end.publish('m', { topic: 't', timeout: 5_000 }).then(
        () => undefined,
        (e: Error) => e,
      ),
    );
    expect(err?.message).toMatch(/denied: authorization (failed|timed out)/);
    expect(app.webhook.length).toBe(delivered);
    await end.close();
  });

  it('each decision is one structured log line with the ids, hook, plugin, decision and reason', () => {
    const lines = log.lines.filter((l) => l.msg === 'authz decision');
    const denied = lines.find((l) => l.hook === 'request' && l.decision === 'deny');
    expect(denied).toMatchObject({
      clientId: expect.stringMatching(/^\d+$/),
      streamId: expect.stringMatching(/^\d+$/),
      plugin: 'ctl',
      reason: expect.any(String),
    });
    expect(lines.some((l) => l.hook === 'rpc' && l.decision === 'allow')).toBe(true);
  });
});

function kindOf(mode: Mode): string {
  if (mode === 'hang') return 'timeout';
  if (mode === 'garbage') return 'invalid';
  return 'error';
}
