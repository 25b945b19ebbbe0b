/**
 * The admin port has the same `httpServer` limits as every other HTTP path of the sidecar (before, it kept Node's
 * defaults: no header-count limit, 16 KiB heads, 60 s head timeout, unbounded connections). A real sidecar with a
 * 1 s head timeout, 20 header lines and 2 connections at most: a slowloris prober gets 408, too many header lines
 * and an oversized head get 431, a third connection is dropped, and /healthz answers 200 throughout.
 */
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../../sidecar/config/load.js';
import { Sidecar } from '../../../sidecar/main.js';
import { get, raw } from '../../helpers/raw-http.js';
import { eventually } from '../../helpers/wait.js';
import { quiet } from '../helpers.js';

let sidecar: Sidecar;
let port: number;

beforeAll(async () => {
  sidecar = new Sidecar(
    parseConfig({
      name: 'admin-limits',
      log: { level: 'silent' },
      admin: { listen: '127.0.0.1:0' },
      httpServer: { headersTimeoutMs: 1_000, maxHeaders: 20, maxHeaderBytes: 4_096, maxConnections: 2 },
    }),
    { logger: quiet() },
  );
  await sidecar.start();
  port = sidecar.admin!.address().port;
});
afterAll(() => sidecar?.destroy());

async function healthz(): Promise<number> {
  const res = await fetch(`http://127.0.0.1:${port}/healthz`, { headers: { connection: 'close' } });
  await res.text();
  return res.status;
}

describe('admin server limits', () => {
  it('a head sent one byte every 200 ms gets 408 and is closed after headersTimeoutMs', async () => {
    const bytes = Array.from({ length: 40 }, () => 'x');
    const r = await raw(port, ['GET /metrics HTTP/1.1\r\nx-slow: ', ...bytes], {
      gapMs: 200,
      waitMs: 10_000,
    });
    expect(r.statuses).toEqual([408]);
    expect(r.closed).toBe(true);
    expect(r.ms).toBeLessThan(8_000);
    expect(await healthz()).toBe(200);
  });

  it('more header lines than maxHeaders get 431', async () => {
    const extra = Array.from({ length: 30 }, (_, i) => `x-h${i}: ${i}\r\n`).join('');
    const r = await raw(port, get('/healthz', 'GET', extra), { waitMs: 5_000 });
    expect(r.statuses).toEqual([431]);
    expect(r.closed).toBe(true);
  });

  it('a head larger than maxHeaderBytes gets 431', async () => {
    const r = await raw(port, get('/healthz', 'GET', `x-big: ${'a'.repeat(8_000)}\r\n`), { waitMs: 5_000 });
    expect(r.statuses).toEqual([431]);
    expect(r.closed).toBe(true);
  });

  it('a connection beyond maxConnections is dropped while two idle ones are held', async () => {
    const held = await Promise.all(
      [0, 1].map(
        () =>
          new Promise<net.Socket>((resolve) => {
            const s = net.connect(port, '127.0.0.1', () => resolve(s));
            s.on('error', () => {});
          }),
      ),
    );
    // Dropped at accept: raw() returns as soon as it is closed; the wait only bounds a starved machine.
    const third = await raw(port, get('/healthz'), { waitMs: 5_000 });
    for (const s of held) s.destroy();
    expect(third.statuses).toEqual([]);
    expect(third.closed).toBe(true);
    // Once the held connections are gone, the admin port serves again.
    expect(await eventually(async () => (await healthz()) === 200, 5_000, '/healthz after the close')).toBe(
      true,
    );
  });

  it('a well-formed scrape within the limits is served', async () => {
    const r = await raw(port, get('/healthz', 'GET', 'connection: close\r\n'), { waitMs: 5_000 });
    expect(r.statuses).toEqual([200]);
    const res = await fetch(`http://127.0.0.1:${port}/metrics`, { headers: { connection: 'close' } });
    expect(res.status).toBe(200);
    expect(await res.text()).toContain('# TYPE');
  });
});
