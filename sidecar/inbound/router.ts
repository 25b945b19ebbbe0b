/**
 * The service table: where a stream opened by a peer goes. The stream meta names the service (the contract is in
 * ../proxy/stream-meta.ts). `http://` services are parsed per request by an HttpForwarder (./http-service.ts);
 * `tcp://` services are piped to a new TCP connection (./tcp-service.ts). An unknown service gets an HTTP 404 JSON
 * answer when the opener said it speaks HTTP, and is closed otherwise.
 */
import type http from 'node:http';
import type { End, Stream } from '../../sdk/index.js';
import type { HttpServerConfig, ServiceConfig } from '../config/schema.js';
import type { AccessLog } from '../observe/access-log.js';
import type { Logger } from '../observe/logger.js';
import type { Direction, Metrics } from '../observe/metrics.js';
import { parseCarrier, type Tracing } from '../observe/tracing.js';
import type { HookRunner } from '../policy/hooks.js';
import { createHttpServer } from '../proxy/http-server.js';
import { deniedCode, ErrorCode, sendError } from '../proxy/http-util.js';
import type { Inflight } from '../proxy/inflight.js';
import { parseStreamMeta } from '../proxy/stream-meta.js';
import { HttpForwarder } from './http-service.js';
import { forwardToTcp, targetHostPort } from './tcp-service.js';

export interface RouterDeps {
  metrics: Metrics;
  logger: Logger;
  hooks: HookRunner;
  inflight: Inflight;
  keepAliveTimeoutMs: number;
  httpServer: HttpServerConfig;
  accessLog: AccessLog;
  tracing: Tracing;
}

export class ServiceRouter {
  private readonly http = new Map<string, { key: string; forwarder: HttpForwarder }>();
  private services: Record<string, ServiceConfig> = {};
  private readonly notFound: http.Server;
  /** What streams handed to the answering server get: a 404 for an unknown service, or a stream hook's denial. */
  private readonly answers = new WeakMap<object, { status: number; code: string; message: string }>();

  constructor(
    services: Record<string, ServiceConfig>,
    private deps: RouterDeps,
  ) {
    this.update(services, deps.keepAliveTimeoutMs);
    // Streams that go nowhere but whose opener speaks HTTP get an HTTP answer, then the stream closes.
    this.notFound = createHttpServer(
      deps.httpServer,
      { keepAliveTimeoutMs: 1000, logger: deps.logger },
      (req, res) => {
        req.resume();
        const a = this.answers.get(req.socket) ?? {
          status: 404,
          code: ErrorCode.notFound,
          message: 'no service',
        };
        res.setHeader('connection', 'close');
        sendError(res, a.status, a.code, a.message);
      },
    );
  }

  /**
   * Applies a new service table. Forwarders of unchanged services stay (with their keep-alive streams); changed
   * or removed ones are retired: they finish what they serve and close.
   */
  update(services: Record<string, ServiceConfig>, keepAliveTimeoutMs: number): void {
    this.deps = { ...this.deps, keepAliveTimeoutMs };
    this.services = services;
    for (const [name, { key, forwarder }] of this.http) {
      const svc = services[name];
      if (svc && JSON.stringify([svc, keepAliveTimeoutMs]) === key) continue;
      this.http.delete(name);
      void forwarder.retire();
    }
    for (const [name, svc] of Object.entries(services)) {
      if (!svc.target.startsWith('http://') || this.http.has(name)) continue;
      const key = JSON.stringify([svc, keepAliveTimeoutMs]);
      this.http.set(name, { key, forwarder: new HttpForwarder(name, svc, this.deps) });
    }
  }

  /**
   * Whether a stream the peer opens goes to a TCP service: such a stream is half-open from its first frame (see
   * forwardToTcp), before the authorization hooks run, so a Dismiss that arrives meanwhile is a half-close.
   */
  halfOpen(meta: Buffer): boolean {
    const { service } = parseStreamMeta(meta);
    return Object.hasOwn(this.services, service) && !this.http.has(service);
  }

  /** Routes one stream the peer opened on `end`. A stream that cannot be routed is always answered or reset. */
  async dispatch(stream: Stream, end: End, direction: Direction): Promise<void> {
    try {
      await this.route(stream, end, direction);
    } catch (err) {
      this.deps.logger.warn({ err: (err as Error).message }, 'stream dispatch failed; resetting it');
      stream.destroy();
    }
  }

  private async route(stream: Stream, end: End, direction: Direction): Promise<void> {
    const { service, proto } = parseStreamMeta(stream.meta);
    const ids = { clientId: String(end.clientId), streamId: String(stream.streamId) };
    const log = this.deps.logger.child({ ...ids, service });
    stream.on('error', (err: Error) => log.debug({ err: err.message }, 'stream error'));
    const decision = await this.deps.hooks.decide('stream', {
      ...ids,
      service,
      streamMeta: stream.meta.toString('utf8'),
      direction,
    });
    if (!decision.allow) {
      // An HTTP opener gets the denial as an answer (403, or 503 when authorization is unavailable); any other
      // opener a reset: it sees the stream fail.
      if (proto === 'http') {
        const status = decision.status ?? 403;
        this.answers.set(stream, { status, code: deniedCode(status), message: decision.reason });
        this.notFound.emit('connection', stream);
      } else stream.destroy();
      return;
    }
    // Own keys only: a service named "constructor" or "__proto__" is an unknown service, not a prototype member.
    const svc = Object.hasOwn(this.services, service) ? this.services[service] : undefined;
    if (!svc) {
      log.warn({ proto }, 'stream for an unknown service');
      if (proto === 'http') {
        this.answers.set(stream, {
          status: 404,
          code: ErrorCode.notFound,
          message: `no such service "${service}"`,
        });
        this.notFound.emit('connection', stream);
      } else stream.destroy();
      return;
    }
    this.deps.metrics.trackStream(stream, direction, service);
    const forwarder = this.http.get(service)?.forwarder;
    if (forwarder) {
      forwarder.serve(stream, direction);
      return;
    }
    const done = this.deps.inflight.begin();
    // A TCP stream is one span: from its open (its parent the opener's span, in the meta) to its end.
    const span = this.deps.tracing.start(`stream ${service}`, 'server', parseCarrier(stream.meta), {
      'geminio.service': service,
      'geminio.direction': direction,
      'geminio.client_id': ids.clientId,
      'geminio.stream_id': ids.streamId,
      'geminio.upstream': svc.target,
      'geminio.authz.decision': 'allow',
    });
    forwardToTcp(stream, targetHostPort(svc.target), svc.connectTimeoutMs, (err) => {
      span?.end(err?.message);
      done();
      if (err) log.debug({ err: err.message }, 'tcp forward ended with an error');
    });
  }

  /** Closes the pools to the targets. */
  async close(): Promise<void> {
    await Promise.all([...this.http.values()].map((h) => h.forwarder.close()));
  }

  destroy(): void {
    for (const h of this.http.values()) h.forwarder.destroy();
  }
}
