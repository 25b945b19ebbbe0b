/**
 * TCP through the sidecars (with half-close), and reverse tunnels to a sidecar that dialled out.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../sidecar/config/load.js';
import { Sidecar } from '../../sidecar/main.js';
import { hasOpenssl, selfSigned } from '../helpers/tls.js';
import { eventually } from '../helpers/wait.js';
import { type App, metricValue, type Pair, quiet, startApp, startPair, startTcpEcho } from './helpers.js';

/** A server that reads to EOF, then (after the client's FIN) answers with the SHA-256 of what it read. */
async function startHashAfterEof(): Promise<{ port: number; close: () => void }> {
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    const h = createHash('sha256');
    let n = 0;
    s.on('data', (c: Buffer) => {
      h.update(c);
      n += c.length;
    });
    s.on('end', () => setTimeout(() => s.end(`${n} ${h.digest('hex')}`), 100));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { port: (server.address() as net.AddressInfo).port, close: () => server.close() };
}

function talk(port: number, payload: Buffer, halfClose: boolean): Promise<{ data: Buffer; ended: boolean }> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
    const chunks: Buffer[] = [];
    s.on('data', (c: Buffer) => chunks.push(c));
    s.on('error', reject);
    s.on('end', () => {
      s.end();
      resolve({ data: Buffer.concat(chunks), ended: true });
    });
    s.on('connect', () => {
      s.write(payload);
      if (halfClose) s.end();
    });
  });
}

let app: App;
let echo: Awaited<ReturnType<typeof startTcpEcho>>;
let hasher: Awaited<ReturnType<typeof startHashAfterEof>>;
let pair: Pair;

beforeAll(async () => {
  app = await startApp(1024);
  echo = await startTcpEcho();
  hasher = await startHashAfterEof();
  pair = await startPair(app, echo.port, {
    services: {
      app: { target: app.url },
      echo: { target: `tcp://127.0.0.1:${echo.port}` },
      hash: { target: `tcp://127.0.0.1:${hasher.port}` },
    },
    outbound: {},
  });
});
afterAll(async () => {
  await pair?.close();
  await app?.close();
  await echo?.close();
  hasher?.close();
});

describe('outbound TCP', () => {
  it('echoes 4 MiB and carries the half-close both ways', async () => {
    const payload = randomBytes(4 * 1024 * 1024);
    const { data, ended } = await talk(pair.tcpPort, payload, true);
    expect(ended).toBe(true);
    expect(data.equals(payload)).toBe(true);
  });

  it('half-close: the far side answers after reading our FIN', async () => {
    const tcp = await startPair(app, hasher.port, {
      services: { echo: { target: `tcp://127.0.0.1:${hasher.port}` } },
    });
    try {
      const payload = randomBytes(3 * 1024 * 1024);
      const { data } = await talk(tcp.tcpPort, payload, true);
      expect(data.toString()).toBe(`${payload.length} ${createHash('sha256').update(payload).digest('hex')}`);
      await eventually(
        async () => (await metricValue(tcp.outbound, 'geminio_streams_open', { service: 'echo' })) === 0,
        6_000,
        'the stream to close',
      );
      expect(
        await metricValue(tcp.outbound, 'geminio_stream_bytes_total', { service: 'echo', flow: 'tx' }),
      ).toBe(payload.length);
    } finally {
      await tcp.close();
    }
  });
});

describe('reverse tunnel', () => {
  it('the public side opens streams back to the client that dialled out, by its announced name', async () => {
    const publicSide = new Sidecar(
      parseConfig({
        name: 'public',
        log: { level: 'silent' },
        admin: { listen: '127.0.0.1:0' },
        inbound: { listen: '127.0.0.1:0' },
        tunnels: [
          { name: 't-tcp', listen: '127.0.0.1:0', client: 'laptop', service: 'echo' },
          { name: 't-http', listen: '127.0.0.1:0', client: 'laptop', service: 'app', protocol: 'http' },
        ],
      }),
      { logger: quiet() },
    );
    await publicSide.start();
    const natd = new Sidecar(
      parseConfig({
        name: 'laptop',
        log: { level: 'silent' },
        admin: { listen: '127.0.0.1:0' },
        upstreams: { hub: { address: `127.0.0.1:${publicSide.inbound!.address()!.port}`, serve: true } },
        services: { echo: { target: `tcp://127.0.0.1:${echo.port}` }, app: { target: app.url } },
      }),
      { logger: quiet() },
    );
    const httpPort = publicSide.listeners.get('t-http')!.listener.address().port;
    const tcpPort = publicSide.listeners.get('t-tcp')!.listener.address().port;
    try {
      const before = await request(`http://127.0.0.1:${httpPort}/x`);
      expect(before.statusCode).toBe(503); // nobody named "laptop" is connected yet
      await before.body.dump();
      await natd.start();
      await natd.upstreams.get('hub')!.waitConnected();
      await eventually(() => publicSide.inbound!.find({ name: 'laptop' }), 5_000, 'laptop to connect');
      const res = await request(`http://127.0.0.1:${httpPort}/through-the-tunnel`);
      expect(res.statusCode).toBe(200);
      expect(await res.body.json()).toMatchObject({ path: '/through-the-tunnel' });
      const payload = randomBytes(256 * 1024);
      const { data } = await talk(tcpPort, payload, true);
      expect(data.equals(payload)).toBe(true);
      expect(
        await metricValue(natd, 'geminio_streams_opened_total', { direction: 'tunnel', service: 'echo' }),
      ).toBe(1);
      // By ClientID too.
      const clientId = String(natd.upstreams.get('hub')!.current()!.clientId);
      expect(publicSide.inbound!.find({ clientId })).toBeDefined();
    } finally {
      natd.destroy();
      publicSide.destroy();
    }
  });
});

describe.skipIf(!hasOpenssl)('TLS between the sidecars', () => {
  it('the inbound listener serves TLS; the upstream verifies it with a CA file', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'geminio-sidecar-tls-'));
    const key = join(dir, 'key.pem');
    const cert = join(dir, 'cert.pem');
    writeFileSync(key, selfSigned().key);
    writeFileSync(cert, selfSigned().cert);
    const tlsPair = await startPair(app, undefined, {
      inboundSection: { tls: { enabled: true, certFile: cert, keyFile: key } },
      upstreamTls: { enabled: true, caFile: cert, servername: 'localhost' },
    });
    try {
      const res = await request(`${tlsPair.web}/over-tls`);
      expect(res.statusCode).toBe(200);
      expect(await res.body.json()).toMatchObject({ path: '/over-tls' });
    } finally {
      await tlsPair.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
