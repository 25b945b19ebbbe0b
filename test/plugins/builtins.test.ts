/**
 * The built-in plugins between a real sidecar pair: token (the outbound sidecar presents it), allow-list,
 * rate-limit accuracy over 5 s, and loading errors that name the plugin and the hook.
 */
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { signToken } from '../../plugins/index.js';
import { dial } from '../../sdk/index.js';
import type { Sidecar } from '../../sidecar/main.js';
import { delay } from '../helpers/wait.js';
import { type App, metricValue, startApp } from '../sidecar/helpers.js';
import { geminioAddress, startInbound, startOutbound, tempDir, writePlugin } from './helpers.js';

const KEY = 'test-key-0123456789abcdef';
let app: App;
const stop: Sidecar[] = [];

beforeAll(async () => {
  app = await startApp(1024);
});
afterAll(async () => {
  for (const s of stop) s.destroy();
  await app?.close();
});

async function getJson(url: string, method = 'GET') {
  const res = await request(url, { method });
  const text = await res.body.text();
  return { status: res.statusCode, body: text ? (JSON.parse(text) as Record<string, unknown>) : {} };
}

describe('token + allow-list between a sidecar pair', () => {
  it('a signed token with cid: the app sees that ClientID and the token subject; the allow-list applies', async () => {
    const inbound = await startInbound(app, {
      plugins: [
        { path: 'builtin:token', options: { keys: [KEY] } },
        { path: 'builtin:allow-list', options: { names: ['edge-*'], paths: ['/public/*'] } },
      ],
    });
    stop.push(inbound);
    const token = signToken({ sub: 'edge-7', exp: Math.floor(Date.now() / 1000) + 300, cid: '4242' }, KEY);
    const out = await startOutbound(geminioAddress(inbound), { token });
    stop.push(out.sidecar);
    expect(String(out.sidecar.upstreams.get('up')!.current()!.clientId)).toBe('4242');
    const ok = await getJson(`${out.web}/public/x`);
    expect(ok).toMatchObject({ status: 200, body: { clientId: '4242' } });
    expect(await getJson(`${out.web}/private`)).toMatchObject({
      status: 403,
      body: { error: 'path /private is not allowed', code: 'FORBIDDEN' },
    });
    // A token whose subject the allow-list refuses, and no token at all: no connection.
    const other = signToken({ sub: 'core-1', exp: Math.floor(Date.now() / 1000) + 300 }, KEY);
    await expect(
      dial(geminioAddress(inbound), { meta: JSON.stringify({ name: 'edge-1', token: other }) }),
    ).rejects.toThrow(/name "core-1" is not allowed/);
    await expect(dial(geminioAddress(inbound), { meta: JSON.stringify({ name: 'edge-1' }) })).rejects.toThrow(
      /no token/,
    );
    expect(
      await metricValue(inbound, 'geminio_authz_decisions_total', {
        hook: 'connect',
        plugin: 'token',
        decision: 'deny',
      }),
    ).toBe(1);
  });

  it('plugin loading errors name the plugin and the hook; the sidecar does not start', async () => {
    const dir = tempDir();
    writePlugin(dir, 'typo.ts', `export default { name: 'typo', hooks: { onRequst: () => allow() } };`);
    writePlugin(dir, 'notfn.ts', `export default { name: 'notfn', hooks: { onRpc: 'allow' } };`);
    await expect(startInbound(app, { plugins: [{ path: `${dir}/typo.ts` }] })).rejects.toThrow(
      /plugin "typo" \(plugins\[0\] .*typo\.ts\): unknown hook "onRequst" \(one of onConnect, onStream, onRequest, onRpc, onMessage\)/,
    );
    await expect(startInbound(app, { plugins: [{ path: `${dir}/notfn.ts` }] })).rejects.toThrow(
      /plugin "notfn" .*hook "onRpc" must be a function, got string/,
    );
    await expect(
      startInbound(app, { plugins: [{ path: 'builtin:token', options: { keys: [] } }] }),
    ).rejects.toThrow(/plugin "token" .*setup failed: keys must list one or two keys/);
  });
});

describe('rate-limit', () => {
  it('admits what its token bucket allows for the arrivals it saw, never more than burst + rate x time; the rest get 429', async () => {
    const rate = 20;
    const burst = 5;
    // A plugin ahead of the limiter notes when each request reaches the chain (same process, same clock as the
    // limiter's). Compared with those arrivals, not with when the test sent them: on a loaded machine requests
    // reach the sidecar late and bunched, and a bucket that is full while none arrives gains nothing.
    const seen = globalThis as unknown as { __rateArrivals?: number[] };
    seen.__rateArrivals = [];
    const arrivals = writePlugin(
      tempDir(),
      'arrivals.ts',
      `export default definePlugin({ name: 'arrivals', hooks: { onRequest() { globalThis.__rateArrivals.push(performance.now()); return allow(); } } });`,
    );
    const inbound = await startInbound(app, {
      plugins: [
        { path: arrivals },
        { path: 'builtin:rate-limit', options: { requests: { ratePerSecond: rate, burst } } },
      ],
    });
    stop.push(inbound);
    const out = await startOutbound(geminioAddress(inbound));
    stop.push(out.sidecar);
    const statuses: number[] = [];
    const started = performance.now();
    const durationMs = 5_000;
    const intervalMs = 1000 / 50; // 50 requests/s offered, 2.5x the limit
    const pending: Array<Promise<void>> = [];
    for (let i = 0; ; i++) {
      const due = started + i * intervalMs;
      if (due - started >= durationMs) break;
      const wait = due - performance.now();
      if (wait > 0) await delay(wait);
      pending.push(
        request(`${out.web}/r${i}`).then(async (res) => {
          await res.body.dump();
          statuses.push(res.statusCode);
        }),
      );
    }
    await Promise.all(pending);
    const times = seen.__rateArrivals;
    expect(times).toHaveLength(statuses.length);
    const allowed = statuses.filter((s) => s === 200).length;
    expect(statuses.every((s) => s === 200 || s === 429)).toBe(true);
    // Never more than the bucket refills over the span of the arrivals (+1 for a token at the edge).
    const spanS = (times.at(-1)! - times[0]!) / 1000;
    expect(allowed).toBeLessThanOrEqual(Math.floor(burst + rate * spanS) + 1);
    // And what a bucket of that size and rate admits of those arrivals; 2 of slack, as the two plugins read the
    // clock a moment apart.
    expect(Math.abs(allowed - bucketAdmits(times, rate, burst))).toBeLessThanOrEqual(2);
    expect(statuses.filter((s) => s === 429).length).toBeGreaterThan(0);
  }, 15_000);
});

/** How many of requests arriving at `times` (ms, in order) a token bucket of `burst` refilled at `rate`/s admits. */
function bucketAdmits(times: number[], rate: number, burst: number): number {
  let tokens = burst;
  let last = times[0]!;
  let admitted = 0;
  for (const t of times) {
    tokens = Math.min(burst, tokens + ((t - last) / 1000) * rate);
    last = t;
    if (tokens >= 1) {
      tokens -= 1;
      admitted++;
    }
  }
  return admitted;
}
