/**
 * The sidecar's stream metrics come from the SDK's diagnostics channels (sidecar/observe/metrics.ts): a labelled
 * stream's bytes are counted both ways, bytes that crossed before it was labelled are added at its close, streams
 * nobody labelled are not counted, and the stream itself is left untouched (no wrapped push or _write).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { Metrics } from '../../../sidecar/observe/metrics.js';
import { randomBytes, readAll, tcpPair } from '../../helpers/pair.js';
import { eventually, waitUntil } from '../../helpers/wait.js';

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function value(m: Metrics, name: string, labels: Record<string, string>): Promise<number> {
  const text = await m.registry.getSingleMetricAsString(name);
  const want = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
  let sum = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith('#') || !want.every((w) => line.includes(w))) continue;
    sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return sum;
}

describe('stream metrics from diagnostics', () => {
  it('counts what a labelled stream carries, including what came before the labels, and wraps nothing', async () => {
    const metrics = new Metrics({ defaults: false });
    const { client, server, cleanup } = await tcpPair();
    cleanups.push(cleanup);
    const early = randomBytes(10_000);
    const late = randomBytes(50_000);
    const down = randomBytes(7_000);
    const accepted = server.acceptStream();
    const s = await client.openStream({ meta: 'svc' });
    s.write(early);
    const r = await accepted;
    // Like the inbound router, label it once its first bytes are in.
    let got = 0;
    r.on('data', (c: Buffer) => {
      got += c.length;
    });
    await waitUntil(() => got === early.length, 5000, 'the early bytes');
    metrics.trackStream(r, 'inbound', 'svc');
    expect(Object.hasOwn(r, 'push') || Object.hasOwn(r, '_write') || Object.hasOwn(r, '_writev')).toBe(false);
    const labels = { direction: 'inbound', service: 'svc' };
    expect(await value(metrics, 'geminio_streams_open', labels)).toBe(1);
    s.end(late);
    r.end(down);
    expect((await readAll(s)).length).toBe(down.length);
    await waitUntil(() => r.destroyed, 5000, 'the stream to close');
    await waitUntil(() => got === early.length + late.length, 5000, 'every byte read');
    // The close totals arrive with the stream's finalize; the rx count then holds the early bytes too.
    const rx = () => value(metrics, 'geminio_stream_bytes_total', { ...labels, flow: 'rx' });
    await eventually(async () => (await rx()) >= early.length + late.length, 5000, 'the close totals').catch(
      () => {},
    );
    expect(await rx()).toBe(early.length + late.length);
    expect(await value(metrics, 'geminio_stream_bytes_total', { ...labels, flow: 'tx' })).toBe(down.length);
    expect(await value(metrics, 'geminio_streams_open', labels)).toBe(0);
    expect(await value(metrics, 'geminio_streams_closed_total', labels)).toBe(1);
  });

  it('counts no stream it did not label, and a stream only in the Metrics that labelled it', async () => {
    const a = new Metrics({ defaults: false });
    const b = new Metrics({ defaults: false });
    const { client, server, cleanup } = await tcpPair();
    cleanups.push(cleanup);
    const accepted = server.acceptStream();
    const s = await client.openStream({ meta: 'x' });
    a.trackStream(s, 'outbound', 'x');
    const r = await accepted;
    const read = readAll(r);
    s.end(randomBytes(4_000));
    expect((await read).length).toBe(4_000);
    r.end();
    await readAll(s);
    const tx = () => value(a, 'geminio_stream_bytes_total', { service: 'x', flow: 'tx' });
    await eventually(async () => (await tx()) >= 4_000, 5000, 'the bytes sent').catch(() => {});
    expect(await value(a, 'geminio_stream_bytes_total', { service: 'x', flow: 'tx' })).toBe(4_000);
    expect(await value(b, 'geminio_stream_bytes_total', {})).toBe(0);
  });
});
