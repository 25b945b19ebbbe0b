/**
 * Fixtures for the abuse suite: a plain app that records every request it gets (no WebSocket server, so an
 * Upgrade it does not accept is answered as an ordinary request), a real pair of sidecars in front of it (with
 * plugins and `httpServer` limits when asked). Raw-socket clients are in test/helpers/raw-http.ts.
 */
import http from 'node:http';
import type net from 'node:net';
import { parseConfig, withConfigDir } from '../../../sidecar/config/load.js';
import { Sidecar } from '../../../sidecar/main.js';
import { quiet } from '../helpers.js';

export interface Seen {
  method: string;
  path: string;
  headers: http.IncomingHttpHeaders;
  rawHeaderCount: number;
}

export interface PlainApp {
  url: string;
  port: number;
  seen: Seen[];
  /** TCP connections open to the app now. */
  connections: () => number;
  /** Bodies POSTed to /webhook, in arrival order. */
  webhook: string[];
  /** Requests the app is answering now (not finished, not aborted). */
  active: () => number;
  close: () => Promise<void>;
}

const CHUNK = Buffer.alloc(64 * 1024, 'x');

/**
 * The app: `/download?size=N` streams N bytes (with backpressure), `/upload` reads the body and answers its
 * length, `/webhook` records the body and answers 200 (after `delayMs`), anything else 200 JSON with the path and the identity headers it got.
 */
export async function startPlainApp(): Promise<PlainApp> {
  const seen: Seen[] = [];
  const sockets = new Set<net.Socket>();
  let active = 0;
  const webhook: string[] = [];
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    active++;
    res.once('close', () => active--);
    seen.push({
      method: req.method ?? '',
      path: url.pathname,
      headers: req.headers,
      rawHeaderCount: req.rawHeaders.length / 2,
    });
    if (url.pathname === '/download') {
      let left = Number(url.searchParams.get('size') ?? 1024 * 1024);
      res.writeHead(200, { 'content-length': left });
      const pump = () => {
        while (left > 0) {
          const n = Math.min(left, CHUNK.length);
          left -= n;
          if (!res.write(CHUNK.subarray(0, n))) return void res.once('drain', pump);
        }
        res.end();
      };
      pump();
      return;
    }
    if (url.pathname === '/webhook') {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        webhook.push(Buffer.concat(chunks).toString());
        setTimeout(() => res.end('ok'), Number(url.searchParams.get('delayMs') ?? 0));
      });
      return;
    }
    if (url.pathname === '/upload') {
      let n = 0;
      req.on('data', (c: Buffer) => {
        n += c.length;
      });
      req.on('end', () => res.end(JSON.stringify({ length: n })));
      return;
    }
    req.resume();
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(
        JSON.stringify({
          path: url.pathname,
          clientId: req.headers['x-geminio-client-id'] ?? null,
          name: req.headers['x-geminio-client-name'] ?? null,
        }),
      );
    });
  });
  // Node's default of 2,000 header lines stays: the next hop's limit the sidecar's identity must not be pushed past.
  server.on('connection', (s: net.Socket) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as net.AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    seen,
    webhook,
    connections: () => sockets.size,
    active: () => active,
    close: async () => {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    },
  };
}

export interface AbusePair {
  inbound: Sidecar;
  outbound: Sidecar;
  /** Port of the outbound HTTP listener "web" (service "app"). */
  webPort: number;
  web: string;
  geminio: string;
  close: () => void;
}

export interface AbusePairOptions {
  httpServer?: Record<string, unknown>;
  plugins?: Array<{ path: string; timeoutMs?: number }>;
  inbound?: Record<string, unknown>;
  web?: Record<string, unknown>;
  services?: Record<string, unknown>;
  /** Where the outbound dials (default: the inbound's geminio port), e.g. through a chaos proxy. */
  upstreamAddress?: (geminioPort: number) => Promise<string> | string;
}

/** An inbound sidecar in front of `app` (service "app") and an outbound one with the HTTP listener "web". */
export async function startAbusePair(app: { url: string }, o: AbusePairOptions = {}): Promise<AbusePair> {
  const inbound = new Sidecar(
    withConfigDir(
      parseConfig({
        name: 'inbound',
        log: { level: 'silent' },
        admin: { listen: '127.0.0.1:0' },
        ...(o.httpServer ? { httpServer: o.httpServer } : {}),
        inbound: { listen: '127.0.0.1:0', ...o.inbound },
        services: o.services ?? { app: { target: app.url, headersTimeoutMs: 5_000 } },
        plugins: o.plugins ?? [],
      }),
      process.cwd(),
    ),
    { logger: quiet() },
  );
  await inbound.start();
  const geminioPort = inbound.inbound!.address()!.port;
  const address = o.upstreamAddress ? await o.upstreamAddress(geminioPort) : `127.0.0.1:${geminioPort}`;
  const outbound = new Sidecar(
    parseConfig({
      name: 'outbound',
      log: { level: 'silent' },
      admin: { listen: '127.0.0.1:0' },
      ...(o.httpServer ? { httpServer: o.httpServer } : {}),
      upstreams: { up: { address, reconnect: { minDelayMs: 20, maxDelayMs: 200 } } },
      outbound: {
        http: [{ name: 'web', listen: '127.0.0.1:0', upstream: 'up', service: 'app', ...o.web }],
      },
    }),
    { logger: quiet() },
  );
  await outbound.start();
  await outbound.upstreams.get('up')!.waitConnected();
  const webPort = outbound.listeners.get('web')!.listener.address().port;
  return {
    inbound,
    outbound,
    webPort,
    web: `http://127.0.0.1:${webPort}`,
    geminio: `127.0.0.1:${geminioPort}`,
    close: () => {
      outbound.destroy();
      inbound.destroy();
    },
  };
}
