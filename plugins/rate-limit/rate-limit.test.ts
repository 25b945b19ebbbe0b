/** The rate-limit plugin's token buckets, on a driven clock. (Accuracy over real sockets: test/plugins.) */
import { describe, expect, it } from 'vitest';
import type { PluginContext } from '../index.js';
import rateLimit, { TokenBucket } from './index.js';

const ctx: PluginContext = {
  name: 'rate-limit',
  configDir: '.',
  logger: { debug() {}, info() {}, warn() {}, error() {} },
};

describe('rate-limit plugin', () => {
  it('a bucket admits its burst, then the rate', () => {
    const b = new TokenBucket(10, 5, 0);
    let admitted = 0;
    for (let t = 0; t <= 10_000; t += 10) if (b.take(t)) admitted++; // 100 attempts per second for 10 s
    expect(admitted).toBeGreaterThanOrEqual(104);
    expect(admitted).toBeLessThanOrEqual(106);
  });

  it('buckets are per ClientID; a deny is a 429', async () => {
    const s = await rateLimit.setup!({ requests: { ratePerSecond: 1, burst: 2 } }, ctx);
    let now = 0;
    (s as { now: () => number }).now = () => now;
    const req = (clientId: string) => ({
      clientId,
      name: undefined,
      streamId: '3',
      method: 'GET',
      path: '/',
      headers: {},
      service: 'app',
    });
    expect((await rateLimit.hooks.onRequest!(req('1'), s)).allow).toBe(true);
    expect((await rateLimit.hooks.onRequest!(req('1'), s)).allow).toBe(true);
    expect(await rateLimit.hooks.onRequest!(req('1'), s)).toMatchObject({ allow: false, status: 429 });
    expect((await rateLimit.hooks.onRequest!(req('2'), s)).allow).toBe(true);
    now += 1000;
    expect((await rateLimit.hooks.onRequest!(req('1'), s)).allow).toBe(true);
    // Kinds without a bucket are not limited.
    expect(
      (await rateLimit.hooks.onRpc!({ clientId: '1', name: undefined, streamId: '1', method: 'm' }, s)).allow,
    ).toBe(true);
  });

  it('setup refuses a rate that is not positive', async () => {
    await expect(async () => rateLimit.setup!({ calls: { ratePerSecond: 0 } }, ctx)).rejects.toThrow(
      /ratePerSecond/,
    );
  });
});
