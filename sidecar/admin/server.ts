/**
 * The admin listener (127.0.0.1 by default): /metrics (Prometheus), /healthz (the process runs), /readyz (the
 * upstreams are connected and the sidecar is not shutting down), /debug/ends (JSON view of the Ends), and at `/` a
 * page of the same (sidecar/admin/page.ts).
 */
import type http from 'node:http';
import type net from 'node:net';
import type { HttpServerConfig } from '../config/schema.js';
import { listenOn } from '../net/listen.js';
import type { Logger } from '../observe/logger.js';
import type { Metrics } from '../observe/metrics.js';
import { createHttpServer } from '../proxy/http-server.js';
import { sendJson } from '../proxy/http-util.js';
import { type DebugEnds, renderPage } from './page.js';

export interface AdminSource {
  metrics: Metrics;
  /** Why the sidecar is not ready; empty when ready. */
  notReady(): string[];
  debugEnds(): DebugEnds;
}

export class AdminServer {
  private readonly server: http.Server;

  /**
   * `limits` are the `httpServer` limits every HTTP path of the sidecar has (head and body-idle timeouts: 408;
   * head bytes and header count: 431; connections): a scraper or prober that misbehaves, or a client that holds
   * connections open, cannot tie up the admin port any more than a listener.
   */
  constructor(
    readonly listen: string,
    private readonly source: AdminSource,
    limits: HttpServerConfig,
    logger: Logger,
  ) {
    const log = logger.child({ listener: 'admin' });
    this.server = createHttpServer(limits, { keepAliveTimeoutMs: 5_000, logger: log }, (req, res) => {
      this.handle(req, res).catch((err: Error) => {
        if (!res.headersSent) sendJson(res, 500, { error: err.message });
      });
    });
  }

  async start(): Promise<net.AddressInfo> {
    return listenOn(this.server, this.listen);
  }

  address(): net.AddressInfo {
    return this.server.address() as net.AddressInfo;
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') return sendJson(res, 405, { error: 'GET only' });
    switch (path) {
      case '/metrics': {
        const { registry } = this.source.metrics;
        const body = await registry.metrics();
        res.writeHead(200, { 'content-type': registry.contentType });
        res.end(body);
        return;
      }
      case '/healthz':
        return sendJson(res, 200, { status: 'ok' });
      case '/readyz': {
        const reasons = this.source.notReady();
        return sendJson(res, reasons.length === 0 ? 200 : 503, { ready: reasons.length === 0, reasons });
      }
      case '/debug/ends':
        return sendJson(res, 200, this.source.debugEnds());
      case '/': {
        const page = renderPage(this.source.debugEnds());
        res.writeHead(200, {
          'content-type': 'text/html; charset=utf-8',
          'content-length': Buffer.byteLength(page),
          'content-security-policy': "default-src 'none'; style-src 'unsafe-inline'",
        });
        res.end(page);
        return;
      }
      default:
        return sendJson(res, 404, {
          error: 'not found',
          endpoints: ['/', '/metrics', '/healthz', '/readyz', '/debug/ends'],
        });
    }
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
