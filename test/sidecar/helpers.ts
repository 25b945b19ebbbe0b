/**
 * Test fixtures for the sidecar: a real Node HTTP app (with a WebSocket echo), a TCP echo server, and a pair of
 * in-process sidecars (inbound in front of the app, outbound dialling it) on free loopback ports.
 */
import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';
import net from 'node:net';
import { Writable } from 'node:stream';
import { WebSocketServer } from 'ws';
import { parseConfig } from '../../sidecar/config/load.js';
import type { SidecarConfig } from '../../sidecar/config/schema.js';
import { Sidecar } from '../../sidecar/main.js';
import { createLogger, type Logger } from '../../sidecar/observe/logger.js';
import type { HttpOutboundListener } from '../../sidecar/outbound/http-listener.js';
import type { Hook } from '../../sidecar/policy/hooks.js';

export const MiB = 1024 * 1024;

export function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

export interface App {
  server: http.Server;
  port: number;
  url: string;
  /** The bytes GET /big serves. */
  big: Buffer;
  /** Webhook deliveries (topic, body); answers with the next status of `webhookStatuses` (200 when empty). */
  webhook: Array<{ topic: string | undefined; body: string }>;
  webhookStatuses: number[];
  /** Requests whose client went away before the answer (for abort propagation). */
  aborted: string[];
  /** Requests received. */
  hits: number;
  close: () => Promise<void>;
}

/** The app behind the inbound sidecar. */
export async function startApp(bigSize = 50 * MiB): Promise<App> {
  const big = randomBytes(bigSize);
  const app = { big, webhook: [], webhookStatuses: [], aborted: [], hits: 0 } as unknown as App;
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    app.hits++;
    req.once('close', () => {
      if (!res.writableFinished) app.aborted.push(url.pathname);
    });
    switch (url.pathname) {
      case '/big':
        res.writeHead(200, { 'content-length': big.length, 'x-sha256': sha256(big) });
        res.end(big);
        return;
      case '/sha': {
        const h = createHash('sha256');
        let n = 0;
        req.on('data', (c: Buffer) => {
          h.update(c);
          n += c.length;
        });
        req.on('end', () =>
          res.end(
            JSON.stringify({
              sha256: h.digest('hex'),
              length: n,
              te: req.headers['transfer-encoding'] ?? null,
            }),
          ),
        );
        return;
      }
      case '/echo':
        res.writeHead(200);
        req.pipe(res);
        return;
      case '/chunked': {
        res.writeHead(200, { 'content-type': 'text/plain' }); // no length: chunked
        let i = 0;
        const timer = setInterval(() => {
          res.write(`chunk ${i}\n`);
          if (++i === 5) {
            clearInterval(timer);
            res.end();
          }
        }, 5);
        return;
      }
      case '/slow':
        setTimeout(
          () => {
            if (!res.destroyed) res.end('slow done');
          },
          Number(url.searchParams.get('ms') ?? 1000),
        );
        return;
      case '/time':
        req.resume();
        req.on('end', () => res.end('12:00'));
        return;
      case '/rpc-fail':
        req.resume();
        req.on('end', () => {
          res.writeHead(500);
          res.end('the local endpoint failed');
        });
        return;
      case '/webhook': {
        const chunks: Buffer[] = [];
        req.on('data', (c: Buffer) => chunks.push(c));
        req.on('end', () => {
          const status = app.webhookStatuses.shift() ?? 200;
          app.webhook.push({
            topic: req.headers['x-geminio-topic'] as string | undefined,
            body: Buffer.concat(chunks).toString(),
          });
          res.writeHead(status);
          res.end(status === 200 ? 'ok' : 'webhook is down');
        });
        return;
      }
      default:
        req.resume();
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(
          JSON.stringify({
            path: url.pathname,
            method: req.method,
            clientId: req.headers['x-geminio-client-id'] ?? null,
          }),
        );
    }
  });
  const wss = new WebSocketServer({ server });
  wss.on('connection', (ws) => ws.on('message', (data, binary) => ws.send(data, { binary })));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as net.AddressInfo).port;
  Object.assign(app, {
    server,
    port,
    url: `http://127.0.0.1:${port}`,
    close: async () => {
      for (const c of wss.clients) c.terminate();
      wss.close();
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    },
  });
  return app;
}

/** A TCP echo server that echoes, then half-closes when the client does. */
export async function startTcpEcho(): Promise<{ port: number; close: () => Promise<void> }> {
  const server = net.createServer({ allowHalfOpen: true }, (s) => s.pipe(s));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const sockets = new Set<net.Socket>();
  server.on('connection', (s) => sockets.add(s));
  return {
    port: (server.address() as net.AddressInfo).port,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise((r) => server.close(r));
    },
  };
}

/** A logger whose JSON lines are kept in `lines`. */
export function memoryLogger(level = 'info'): { logger: Logger; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const destination = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString().split('\n'))
        if (l) lines.push(JSON.parse(l) as Record<string, unknown>);
      cb();
    },
  });
  return { logger: createLogger({ level, format: 'json', destination }), lines };
}

export const quiet = (): Logger => createLogger({ level: 'silent', format: 'json' });

export interface PairOptions {
  /** Extra top-level keys for the inbound sidecar's config. */
  inbound?: Record<string, unknown>;
  outbound?: Record<string, unknown>;
  /** Extra keys for the inbound config's `inbound` section. */
  inboundSection?: Record<string, unknown>;
  services?: Record<string, unknown>;
  outboundHooks?: Hook[];
  outboundLogger?: Logger;
  inboundLogger?: Logger;
  /** TLS settings of the outbound sidecar's upstream. */
  upstreamTls?: Record<string, unknown>;
  /** Extra keys for the web listener. */
  web?: Record<string, unknown>;
}

export interface Pair {
  inbound: Sidecar;
  outbound: Sidecar;
  /** Base URL of the outbound HTTP listener "web". */
  web: string;
  /** Port of the outbound TCP listener "tcp" (0 when none). */
  tcpPort: number;
  geminioPort: number;
  close: () => Promise<void>;
}

/** The inbound sidecar config for `services`, listening on a free port (or `port`). */
export function inboundConfig(
  services: Record<string, unknown>,
  extra: Record<string, unknown> = {},
  port = 0,
  top: Record<string, unknown> = {},
): SidecarConfig {
  return parseConfig({
    name: 'inbound',
    log: { level: 'silent' },
    admin: { listen: '127.0.0.1:0' },
    inbound: { listen: `127.0.0.1:${port}`, ...extra },
    services,
    ...top,
  });
}

/** Starts an inbound sidecar in front of `app` and an outbound one with listeners "web" (HTTP) and "tcp". */
export async function startPair(
  app: App,
  tcpEchoPort: number | undefined,
  o: PairOptions = {},
): Promise<Pair> {
  const services = o.services ?? {
    app: { target: app.url, headersTimeoutMs: 5_000 },
    ...(tcpEchoPort ? { echo: { target: `tcp://127.0.0.1:${tcpEchoPort}` } } : {}),
  };
  const inbound = new Sidecar(inboundConfig(services, o.inboundSection, 0, o.inbound), {
    logger: o.inboundLogger ?? quiet(),
  });
  await inbound.start();
  const geminioPort = inbound.inbound!.address()!.port;
  const outbound = new Sidecar(
    parseConfig({
      name: 'outbound',
      log: { level: o.outboundLogger ? 'info' : 'silent' },
      admin: { listen: '127.0.0.1:0' },
      upstreams: {
        up: {
          address: `127.0.0.1:${geminioPort}`,
          reconnect: { minDelayMs: 20, maxDelayMs: 200 },
          ...(o.upstreamTls ? { tls: o.upstreamTls } : {}),
        },
      },
      outbound: {
        http: [{ name: 'web', listen: '127.0.0.1:0', upstream: 'up', service: 'app', ...o.web }],
        tcp: tcpEchoPort ? [{ name: 'tcp', listen: '127.0.0.1:0', upstream: 'up', service: 'echo' }] : [],
      },
      ...o.outbound,
    }),
    { logger: o.outboundLogger ?? quiet(), hooks: o.outboundHooks },
  );
  await outbound.start();
  await outbound.upstreams.get('up')!.waitConnected();
  const web = outbound.listeners.get('web')!.listener as HttpOutboundListener;
  const tcp = outbound.listeners.get('tcp')?.listener;
  return {
    inbound,
    outbound,
    web: `http://127.0.0.1:${web.address().port}`,
    tcpPort: tcp ? tcp.address().port : 0,
    geminioPort,
    close: async () => {
      outbound.destroy();
      inbound.destroy();
    },
  };
}

/** Reads one metric's value from a sidecar's registry. */
export async function metricValue(
  s: Sidecar,
  name: string,
  labels: Record<string, string> = {},
): Promise<number> {
  const m = (await s.metrics.registry.getSingleMetric(name)?.get()) as
    | { values: Array<{ value: number; labels: Record<string, string | number> }> }
    | undefined;
  let sum = 0;
  for (const v of m?.values ?? []) {
    if (Object.entries(labels).every(([k, want]) => String(v.labels[k]) === want)) sum += v.value;
  }
  return sum;
}
