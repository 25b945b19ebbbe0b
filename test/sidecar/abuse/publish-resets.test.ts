/**
 * Publishes through a link that is reset 8 times (the chaos proxy between the outbound and the inbound sidecar):
 * every answer matches what the webhook got. 202 means the webhook got the message; any other answer is an error
 * that says it was not delivered (503 while the upstream is down), and no publish waits for its timeout (no 504).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ChaosProxy } from '../../../chaos/index.js';
import { delay } from '../../helpers/wait.js';
import { type AbusePair, type PlainApp, startAbusePair, startPlainApp } from './helpers.js';

const PUBLISHES = 2_000;
const RESETS = 8;
const AT_ONCE = 64;

let app: PlainApp;
let pair: AbusePair;
let proxy: ChaosProxy;

beforeAll(async () => {
  app = await startPlainApp();
  pair = await startAbusePair(app, {
    // A webhook that takes 20 ms: messages queue up at the inbound, and a reset finds some still queued.
    inbound: { messages: { webhook: `${app.url}/webhook?delayMs=20`, concurrency: 4 } },
    web: { publish: { timeoutMs: 15_000 } },
    upstreamAddress: async (port) => {
      proxy = new ChaosProxy({ target: { host: '127.0.0.1', port }, killGraceMs: 100 });
      const a = await proxy.start();
      return `${a.host}:${a.port}`;
    },
  });
});
afterAll(async () => {
  pair?.close();
  await proxy?.close();
  await app?.close();
});

describe(`${PUBLISHES.toLocaleString('en')} publishes through ${RESETS} link resets`, () => {
  it('every 202 was delivered to the webhook, every other answer was not, and none is a 504', async () => {
    const answers = new Map<string, { status: number; body: string }>();
    let next = 0;
    const worker = async () => {
      while (next < PUBLISHES) {
        const body = `msg-${next++}`;
        const res = await fetch(`${pair.web}/publish/t`, { method: 'POST', body });
        answers.set(body, { status: res.status, body: await res.text() });
      }
    };
    const workers = Promise.all(Array.from({ length: AT_ONCE }, worker));
    // Each reset hits a live link: on a loaded machine the reconnect can take longer than the 150 ms between
    // resets, and a reset of no connection would not count.
    let resets = 0;
    while (resets < RESETS && next < PUBLISHES) {
      await delay(150);
      if (proxy.connections > 0 && proxy.resetAll() > 0) resets++;
    }
    await workers;
    await delay(200); // deliveries whose answer raced the last reset
    const delivered = new Set(app.webhook);
    const byStatus = new Map<number, number>();
    const mismatches: string[] = [];
    for (const [msg, a] of answers) {
      byStatus.set(a.status, (byStatus.get(a.status) ?? 0) + 1);
      if (a.status === 202 && !delivered.has(msg)) mismatches.push(`${msg}: 202 but not delivered`);
      if (a.status !== 202 && delivered.has(msg))
        mismatches.push(`${msg}: ${a.status} ${a.body} but delivered`);
    }
    expect(answers.size).toBe(PUBLISHES);
    expect(mismatches).toEqual([]);
    expect(byStatus.get(504) ?? 0).toBe(0);
    // The failures say why: the upstream was not connected.
    for (const a of answers.values()) if (a.status !== 202) expect(a.status).toBe(503);
    expect(proxy.stats.reset).toBeGreaterThanOrEqual(RESETS);
  }, 120_000);
});
