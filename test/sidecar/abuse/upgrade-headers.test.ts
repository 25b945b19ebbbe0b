/**
 * Upgrade and header abuse through a real pair (outbound listener -> geminio -> inbound -> app), on raw sockets:
 * an Upgrade the target answers with 200 (not 101) is an ordinary response and the connection goes on as HTTP,
 * decided request by request; client identity headers never reach the app; 998 and 10,000 headers get 431.
 */

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { head, raw } from '../../helpers/raw-http.js';
import { tempDir, writePlugin } from '../../plugins/helpers.js';
import { type AbusePair, type PlainApp, startAbusePair, startPlainApp } from './helpers.js';

const ALLOW_LIST = `
export default definePlugin({
  name: 'no-admin',
  hooks: {
    onRequest(facts) { return facts.path.startsWith('/admin') ? deny('admin is off limits') : allow(); },
  },
});`;

let app: PlainApp;
let pair: AbusePair;

beforeAll(async () => {
  app = await startPlainApp();
  const dir = tempDir();
  const plugin = writePlugin(dir, 'no-admin.ts', ALLOW_LIST);
  pair = await startAbusePair(app, { plugins: [{ path: plugin, timeoutMs: 2_000 }] });
});
afterAll(async () => {
  pair?.close();
  await app?.close();
});

const SPOOF = 'x-geminio-client-id: 42\r\nx-geminio-client-name: root\r\n';
const CLOSE = 'connection: close\r\n';
const UPGRADE = 'connection: upgrade\r\nupgrade: h2c\r\n';

describe('Upgrade to a target that answers 200, not 101', () => {
  it('the 200 is relayed, and a denied request after it on the same connection answers 403 and never reaches the app', async () => {
    const before = app.seen.length;
    const r = await raw(
      pair.webPort,
      head('/hello', UPGRADE + SPOOF) + head('/admin/secret', SPOOF + CLOSE),
      {
        waitMs: 3_000,
      },
    );
    expect(r.statuses).toEqual([200, 403]);
    const got = app.seen.slice(before);
    expect(got.map((s) => s.path)).toEqual(['/hello']);
    // The sidecar's identity, not the client's.
    expect(got[0]!.headers['x-geminio-client-id']).toMatch(/^\d+$/);
    expect(got[0]!.headers['x-geminio-client-id']).not.toBe('42');
    expect(got[0]!.headers['x-geminio-client-name']).not.toBe('root');
  });

  it('an allowed request after the 200 is forwarded as HTTP (its own request at the app, identity set by the sidecar)', async () => {
    const before = app.seen.length;
    const r = await raw(pair.webPort, head('/one', UPGRADE + SPOOF) + head('/two', SPOOF + CLOSE), {
      waitMs: 3_000,
    });
    expect(r.statuses).toEqual([200, 200]);
    const got = app.seen.slice(before);
    expect(got.map((s) => s.path)).toEqual(['/one', '/two']);
    for (const s of got) expect(s.headers['x-geminio-client-id']).not.toBe('42');
  });

  it('an Upgrade to a denied path is denied before anything is sent to the app', async () => {
    const before = app.seen.length;
    const r = await raw(pair.webPort, head('/admin/ws', UPGRADE + CLOSE), { waitMs: 3_000 });
    expect(r.statuses).toEqual([403]);
    expect(app.seen.length).toBe(before);
  });
});

function manyHeaders(n: number): string {
  let h = '';
  for (let i = 0; i < n; i++) h += `x-h${i}: v\r\n`;
  return h;
}

describe('header count and size (httpServer.maxHeaders 100, maxHeaderBytes 32 KiB)', () => {
  it('998 headers: 431 with connection: close; nothing reaches the app', async () => {
    const before = app.seen.length;
    const r = await raw(pair.webPort, head('/many', manyHeaders(998) + SPOOF), { waitMs: 3_000 });
    expect(r.statuses).toEqual([431]);
    expect(r.text.toLowerCase()).toContain('connection: close');
    expect(r.closed).toBe(true);
    expect(app.seen.length).toBe(before);
  });

  it('10,000 headers: 431 with connection: close; nothing reaches the app', async () => {
    const before = app.seen.length;
    const r = await raw(pair.webPort, head('/many', manyHeaders(10_000)), { waitMs: 3_000 });
    expect(r.statuses).toEqual([431]);
    expect(r.text.toLowerCase()).toContain('connection: close');
    expect(app.seen.length).toBe(before);
  });

  it('a head larger than 32 KiB in one header: 431', async () => {
    const r = await raw(pair.webPort, head('/big', `x-big: ${'a'.repeat(40 * 1024)}\r\n`), { waitMs: 3_000 });
    expect(r.statuses).toEqual([431]);
  });

  it('98 headers and spoofed identity: the app gets the sidecar identity, the client copies removed', async () => {
    const before = app.seen.length;
    const r = await raw(pair.webPort, head('/within', manyHeaders(95) + SPOOF + CLOSE), { waitMs: 3_000 });
    expect(r.statuses[0]).toBe(200);
    const got = app.seen.slice(before);
    expect(got).toHaveLength(1);
    expect(got[0]!.headers['x-geminio-client-id']).toMatch(/^\d+$/);
    expect(got[0]!.headers['x-geminio-client-id']).not.toBe('42');
    expect(got[0]!.headers['x-geminio-client-name']).toBe('outbound'); // the name the outbound announced
  });
});

describe('identity cannot be pushed past the next hop limit (limits raised to 5,000 headers)', () => {
  let big: AbusePair;
  beforeAll(async () => {
    big = await startAbusePair(app, { httpServer: { maxHeaders: 5_000, maxHeaderBytes: 1024 * 1024 } });
  });
  afterAll(() => big?.close());

  it('1,998 client headers: the app (2,000-line limit) still gets x-geminio-client-id', async () => {
    const before = app.seen.length;
    const r = await raw(big.webPort, head('/crowded', manyHeaders(1_997) + SPOOF + CLOSE), { waitMs: 5_000 });
    expect(r.statuses[0]).toBe(200);
    const got = app.seen.slice(before);
    expect(got).toHaveLength(1);
    expect(got[0]!.headers['x-geminio-client-id']).toMatch(/^\d+$/);
    expect(got[0]!.headers['x-geminio-client-id']).not.toBe('42');
  });
});
