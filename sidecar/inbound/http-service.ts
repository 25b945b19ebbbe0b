/**
 * An `http://` service: `HttpForwarder` serves the HTTP exchanges arriving on accepted streams by handing each
 * stream to a local http.Server (so every request is parsed, hooked and measured) and forwarding to the configured
 * `http://host:port` target (../proxy/http.ts).
 */
import type http from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import type { Stream } from '../../sdk/index.js';
import type { HttpServerConfig, ServiceConfig } from '../config/schema.js';
import { Pool } from '../net/undici.js';
import { type AccessLog, type ObserveInfo, observe, refusalLogger } from '../observe/access-log.js';
import type { Logger } from '../observe/logger.js';
import type { Direction, HttpSeries, Metrics } from '../observe/metrics.js';
import type { Tracing } from '../observe/tracing.js';
import type { HookRunner } from '../policy/hooks.js';
import { proxyRequest, relayUpgrade } from '../proxy/http.js';
import { admitUpgrade, createHttpServer } from '../proxy/http-server.js';
import { deniedCode, ErrorCode, hasBody, rawErrorResponse, sendDenied } from '../proxy/http-util.js';
import type { Inflight } from '../proxy/inflight.js';
import { targetHostPort } from './tcp-service.js';

export interface ForwarderDeps {
  metrics: Metrics;
  logger: Logger;
  hooks: HookRunner;
  inflight: Inflight;
  keepAliveTimeoutMs: number;
  httpServer: HttpServerConfig;
  accessLog: AccessLog;
  tracing: Tracing;
}

/** Serves HTTP exchanges arriving on streams for one `http://` service. */
export class HttpForwarder {
  private readonly server: http.Server;
  private readonly pool: Pool;
  private readonly target: { host: string; port: number };
  /** Streams served, with their requests in flight. */
  private readonly active = new Map<Stream, number>();
  /**
   * What each stream's exchanges are observed with, built once per stream (not per request): who opened it (a
   * remote End on the inbound listener, or the server of a `serve` upstream) and its ids as strings.
   */
  private readonly infos = new WeakMap<object, ObserveInfo & { clientId: string }>();
  private retired = false;
  private drained: (() => void) | undefined;
  private readonly log: Logger;
  private readonly series: HttpSeries;

  constructor(
    readonly service: string,
    private readonly config: ServiceConfig,
    private readonly deps: ForwarderDeps,
  ) {
    this.target = targetHostPort(config.target);
    this.pool = new Pool(config.target, {
      connections: config.maxConnections,
      connectTimeout: config.connectTimeoutMs,
      keepAliveTimeout: 4_000,
    });
    this.log = deps.logger.child({ listener: 'inbound', service });
    this.series = deps.metrics.httpSeries('inbound', service, `${this.target.host}:${this.target.port}`);
    this.server = createHttpServer(
      deps.httpServer,
      {
        keepAliveTimeoutMs: deps.keepAliveTimeoutMs,
        logger: this.log,
        onRefused: refusalLogger(this.series, 'inbound', deps.accessLog),
      },
      (req, res) => void this.handle(req, res),
    );
    this.server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      if (admitUpgrade(req, socket, deps.httpServer, this.log)) void this.upgrade(req, socket, head);
    });
  }

  /** Takes an accepted stream: from now on it is one HTTP/1.1 connection of this service. */
  serve(stream: Stream, direction: Direction = 'inbound'): void {
    this.infos.set(stream, this.makeInfo(stream, direction));
    this.track(stream);
    this.server.emit('connection', stream);
  }

  /**
   * Takes an accepted exchange stream (../proxy/exchange.ts): what its exchanges need from this service (the pool
   * to the target, the observe info) and how they are counted, so that a retired forwarder ends it when idle.
   */
  adopt(
    stream: Stream,
    direction: Direction,
  ): {
    dispatcher: Pool;
    info: ObserveInfo;
    onExchange: (busy: boolean) => void;
    retiring: () => boolean;
  } {
    this.track(stream);
    return {
      dispatcher: this.pool,
      retiring: () => this.retired,
      info: this.makeInfo(stream, direction),
      onExchange: (busy) => {
        const left = (this.active.get(stream) ?? 0) + (busy ? 1 : -1);
        if (this.active.has(stream)) this.active.set(stream, left);
        if (!busy && this.retired && left === 0 && !stream.destroyed) stream.end();
      },
    };
  }

  private track(stream: Stream): void {
    this.active.set(stream, 0);
    this.series.connections.inc();
    stream.once('close', () => {
      this.series.connections.dec();
      this.active.delete(stream);
      if (this.active.size === 0) this.drained?.();
    });
  }

  /** The stream's observe info (built in serve(); a stream handed over otherwise counts as inbound). */
  private infoOf(stream: Stream): ObserveInfo & { clientId: string } {
    let info = this.infos.get(stream);
    if (!info) {
      info = this.makeInfo(stream, 'inbound');
      this.infos.set(stream, info);
    }
    return info;
  }

  private makeInfo(stream: Stream, direction: Direction): ObserveInfo & { clientId: string } {
    const { metrics, logger, inflight, accessLog, tracing } = this.deps;
    const clientId = String(stream.clientId);
    return {
      listener: 'inbound',
      series: this.series,
      direction,
      clientId,
      streamId: String(stream.streamId),
      metrics,
      logger,
      inflight,
      accessLog,
      tracing,
    };
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const stream = req.socket as unknown as Stream;
    const info = this.infoOf(stream);
    const seen = observe(req, res, info);
    this.active.set(stream, (this.active.get(stream) ?? 0) + 1);
    res.once('close', () => {
      const left = (this.active.get(stream) ?? 1) - 1;
      if (this.active.has(stream)) this.active.set(stream, left);
      if (this.retired && left === 0 && !stream.destroyed) stream.end();
    });
    if (this.retired) res.setHeader('connection', 'close');
    const decision = await this.deps.hooks.decide('request', {
      clientId: info.clientId,
      streamId: info.streamId,
      method: req.method,
      path: req.url,
      headers: req.headers,
      service: this.service,
      direction: info.direction,
    });
    seen.decided(decision.allow);
    if (!decision.allow) {
      // A denied body is not worth reading: close the stream after the answer instead of draining it.
      if (hasBody(req)) res.setHeader('connection', 'close');
      return sendDenied(res, decision);
    }
    // Identity headers come from the sidecar only: the client's own x-geminio-* headers are dropped, and plugin
    // headers cannot replace the sidecar's.
    const identity: Record<string, string> = { 'x-geminio-client-id': info.clientId };
    if (decision.name !== undefined) identity['x-geminio-client-name'] = decision.name;
    await proxyRequest(req, res, {
      dispatcher: this.pool,
      headersTimeoutMs: this.config.headersTimeoutMs,
      bodyTimeoutMs: this.config.bodyTimeoutMs,
      retries: 1,
      side: 'target',
      extraHeaders: { ...decision.headers, ...identity },
      dropPrefix: 'x-geminio-',
    });
  }

  /**
   * An Upgrade (WebSocket) request: decided like any request, then replayed on a fresh TCP connection to the
   * target, then raw bytes both ways.
   */
  private async upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    socket.on('error', () => {});
    const stream = req.socket as unknown as Stream;
    const decision = await this.deps.hooks.decide('request', {
      clientId: String(stream.clientId),
      streamId: String(stream.streamId),
      method: req.method,
      path: req.url,
      headers: req.headers,
      service: this.service,
      direction: this.infoOf(stream).direction,
    });
    if (!decision.allow) {
      const status = decision.status ?? 403;
      return void socket.end(rawErrorResponse(status, deniedCode(status), decision.reason));
    }
    const identity: Record<string, string> = { 'x-geminio-client-id': String(stream.clientId) };
    if (decision.name !== undefined) identity['x-geminio-client-name'] = decision.name;
    relayUpgrade(req, socket, head, {
      connection: net.connect(this.target),
      extraHeaders: { ...decision.headers, ...identity },
      dropPrefix: 'x-geminio-',
      unavailable: (err) => rawErrorResponse(503, ErrorCode.targetUnavailable, err.message),
      resumeHttp: (s, rest) => {
        if (rest.length > 0) s.unshift(rest);
        this.server.emit('connection', s);
      },
      onDone: this.deps.inflight.begin(),
    });
  }

  /**
   * Retires this forwarder (a reload changed or removed its service): idle streams end now, busy ones after their
   * response (`connection: close`), and the pool closes once the last stream is gone. New streams go elsewhere.
   */
  retire(): Promise<void> {
    this.retired = true;
    for (const [s, n] of this.active) if (n === 0) s.end();
    return this.close();
  }

  /**
   * Closes the pool to the target once its requests are done. The streams themselves close with their End (the
   * composition root closes Ends only after the work in flight is done, or the grace period is over).
   */
  async close(): Promise<void> {
    if (this.retired && this.active.size > 0) await new Promise<void>((r) => (this.drained = r));
    await this.pool.close();
  }

  /** Drops everything now. */
  destroy(): void {
    for (const s of this.active.keys()) s.destroy();
    this.pool.destroy().catch(() => {});
  }
}
