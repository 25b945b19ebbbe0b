/**
 * TLS material reload in process, both sides: the inbound listener's certificate and an upstream's CA are read
 * again on reload; live connections stay, the next connection uses the new files, an invalid file keeps the old.
 */
import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig, withConfigDir } from '../../sidecar/config/load.js';
import { Sidecar } from '../../sidecar/main.js';
import { hasOpenssl, makeCert } from '../helpers/tls.js';
import { eventually } from '../helpers/wait.js';
import { type App, metricValue, quiet, startApp } from './helpers.js';

let app: App;
let dir: string;
let inbound: Sidecar;
let outbound: Sidecar;

/** Makes certificate `serial` and makes it the inbound one (in/) and, with `trust`, the outbound CA (ca.pem). */
function rotate(serial: string, trust: boolean): void {
  makeCert(join(dir, `v${serial}`), serial);
  copyFileSync(join(dir, `v${serial}`, 'tls.crt'), join(dir, 'in', 'tls.crt'));
  copyFileSync(join(dir, `v${serial}`, 'tls.key'), join(dir, 'in', 'tls.key'));
  if (trust) copyFileSync(join(dir, `v${serial}`, 'tls.crt'), join(dir, 'ca.pem'));
}

const status = async () => {
  const port = outbound.listeners.get('web')!.listener.address().port;
  const res = await request(`http://127.0.0.1:${port}/x`);
  await res.body.dump();
  return res.statusCode;
};

/** Drops the connections on the inbound side: the outbound End redials with what its options hold now. */
function dropConnections(): void {
  for (const c of inbound.inbound!.ends.values()) c.end.destroy();
}

beforeAll(async () => {
  if (!hasOpenssl) return;
  app = await startApp(1024);
  dir = mkdtempSync(join(tmpdir(), 'geminio-tls-reload-'));
  makeCert(join(dir, 'in'), '0a');
  copyFileSync(join(dir, 'in', 'tls.crt'), join(dir, 'ca.pem'));
  inbound = new Sidecar(
    withConfigDir(
      parseConfig({
        name: 'in',
        log: { level: 'silent' },
        admin: { listen: '127.0.0.1:0' },
        inbound: {
          listen: '127.0.0.1:0',
          tls: { enabled: true, certFile: 'in/tls.crt', keyFile: 'in/tls.key' },
        },
        services: { app: { target: app.url } },
      }),
      dir,
    ),
    { logger: quiet() },
  );
  await inbound.start();
  outbound = new Sidecar(
    withConfigDir(
      parseConfig({
        name: 'out',
        log: { level: 'silent' },
        admin: { listen: '127.0.0.1:0' },
        upstreams: {
          up: {
            address: `127.0.0.1:${inbound.inbound!.address()!.port}`,
            tls: { enabled: true, caFile: 'ca.pem' },
            reconnect: { minDelayMs: 20, maxDelayMs: 200 },
          },
        },
        outbound: { http: [{ name: 'web', listen: '127.0.0.1:0', upstream: 'up', service: 'app' }] },
      }),
      dir,
    ),
    { logger: quiet() },
  );
  await outbound.start();
  await outbound.upstreams.get('up')!.waitConnected();
});

afterAll(async () => {
  outbound?.destroy();
  inbound?.destroy();
  await app?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe.skipIf(!hasOpenssl)('TLS files reload (needs openssl)', () => {
  it('a new server certificate and CA: the live connection stays, the next one uses them', async () => {
    expect(await status()).toBe(200);
    const clientId = outbound.upstreams.get('up')!.endNow!.clientId;
    rotate('0b', true);
    await inbound.reload(inbound.config);
    await outbound.reload(outbound.config);
    expect(await metricValue(inbound, 'geminio_tls_reloads_total', { what: 'inbound', outcome: 'ok' })).toBe(
      1,
    );
    expect(
      await metricValue(outbound, 'geminio_tls_reloads_total', { what: 'upstream up', outcome: 'ok' }),
    ).toBe(1);
    // The live connection kept its session.
    expect(await metricValue(outbound, 'geminio_upstream_disconnects_total')).toBe(0);
    expect(outbound.upstreams.get('up')!.endNow!.clientId).toBe(clientId);
    expect(await status()).toBe(200);
    // The next connection verifies the new certificate against the new CA.
    dropConnections();
    await eventually(
      async () => (await metricValue(outbound, 'geminio_upstream_reconnects_total')) >= 1,
      10_000,
    );
    expect(await status()).toBe(200);
  });

  it('a CA that is not reloaded refuses the new certificate; reloading it lets the redial through', async () => {
    const before = await metricValue(outbound, 'geminio_upstream_reconnects_total');
    rotate('0c', false);
    await inbound.reload(inbound.config);
    dropConnections();
    await eventually(async () => (await status()) === 503, 10_000, 'the upstream to be down');
    copyFileSync(join(dir, 'v0c', 'tls.crt'), join(dir, 'ca.pem'));
    await outbound.reload(outbound.config);
    await eventually(async () => (await status()) === 200, 10_000, 'the redial with the new CA');
    expect(await metricValue(outbound, 'geminio_upstream_reconnects_total')).toBe(before + 1);
  });

  it('an invalid file is refused and counted; the running set stays', async () => {
    writeFileSync(join(dir, 'ca.pem'), 'not a certificate');
    await outbound.reload(outbound.config);
    expect(await metricValue(outbound, 'geminio_tls_reloads_total', { outcome: 'invalid' })).toBe(1);
    expect(await metricValue(outbound, 'geminio_config_reloads_total', { outcome: 'error' })).toBe(1);
    dropConnections();
    // The redial uses the CA that was running (0c), which the server's certificate still matches.
    await eventually(async () => (await status()) === 200, 10_000, 'the redial with the running CA');
  });
});
