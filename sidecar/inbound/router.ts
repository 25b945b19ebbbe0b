/**
 * The service table: where a stream opened by a peer goes. The stream meta names the service (the contract is in
 * ../proxy/stream-meta.ts). `http://` services are parsed per request by an HttpForwarder (./http-service.ts);
 * `tcp://` services are piped to a new TCP connection (./tcp-service.ts). An unknown service gets an HTTP 404 JSON
 * answer when the opener said it speaks HTTP, and is closed otherwise.
 */
import type http from 'node:http';
import type { End, Stream } from '../../sdk/index.js';
import type { Http2Config, ServiceConfig } from '../config/schema.js';
import type { Direction } from '../observe/metrics.js';
import { parseCarrier } from '../observe/tracing.js';
import { EXCHANGE_PROTO } from '../proxy/exchange.js';
import { H2Inbound, isH2Target } from '../proxy/h2.js';
import { createHttpServer } from '../proxy/http-server.js';
import { deniedCode, ErrorCode, sendError } from '../proxy/http-util.js';
import { parseStreamMeta } from '../proxy/stream-meta.js';
import { ExchangeService, type ExchangeStreamContext } from './exchange-service.js';
import { type ForwarderDeps, HttpForwarder } from './http-service.js';
import { forwardToTcp, targetHostPort } from './tcp-service.js';

export interface RouterDeps extends ForwarderDeps {
  http2: Http2Config;
}

/**
 * Test seam: with `exchange` false this router handles the exchange proto as a sidecar from before it did (as an
 * unknown proto, which is an "http" stream to an http:// service), so the opener's fallback can be tested.
 */
export const routerSeams = { exchange: true };

export class ServiceRouter {
  private readonly http = new Map<string, { key: string; forwarder: HttpForwarder }>();
  /** The settings of each h2c:// and h2:// service, as JSON: a stream adopted under other settings is retired. */
  private readonly h2Keys = new Map<string, string>();
  private services: Record<string, ServiceConfig> = {};
  private readonly notFound: http.Server;
  /** What streams handed to the answering server get: a 404 for an unknown service, or a stream hook's denial. */
  private readonly answers = new WeakMap<object, { status: number; code: string; message: string }>();
  /** The HTTP/2 sessions to h2c:// and h2:// targets. */
  private readonly h2: H2Inbound;
  /** Streams with proto "exchange" (HTTP exchanges one after another) and "h2" (one HTTP/2 request each). */
  private readonly exchanges: ExchangeService;

  constructor(
    services: Record<string, ServiceConfig>,
    private deps: RouterDeps,
  ) {
    this.update(services, deps.keepAliveTimeoutMs);
    this.h2 = new H2Inbound(deps);
    this.exchanges = new ExchangeService(deps, this.h2);
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
    this.h2Keys.clear();
    for (const [name, svc] of Object.entries(services))
      if (isH2Target(svc.target)) this.h2Keys.set(name, JSON.stringify(svc));
    // The HTTP/2 target sessions: the first update runs from the constructor, before they exist.
    this.h2?.retain(services);
  }

  /**
   * Whether a stream the peer opens goes to a TCP service: such a stream is half-open from its first frame (see
   * forwardToTcp), before the authorization hooks run, so a Dismiss that arrives meanwhile is a half-close.
   */
  halfOpen(meta: Buffer): boolean {
    const { service, proto } = parseStreamMeta(meta);
    if (proto === EXCHANGE_PROTO && routerSeams.exchange) return false;
    return proto !== 'h2' && Object.hasOwn(this.services, service) && !this.http.has(service);
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
    // Framed streams: "exchange" (exchanges one after another) and "h2" (one HTTP/2 request, from an outbound
    // sidecar that predates the exchange proto). Their requests are answered even when refused: a gRPC status
    // (PERMISSION_DENIED, UNAVAILABLE, UNIMPLEMENTED) or the HTTP status.
    const framed = (proto === EXCHANGE_PROTO && routerSeams.exchange) || proto === 'h2';
    const ctx: ExchangeStreamContext = { service, direction, ...ids, single: proto === 'h2' };
    if (!decision.allow && framed) {
      const status = decision.status ?? 403;
      const refusal = { status, code: deniedCode(status), message: decision.reason };
      return this.exchanges.serve(stream, { ...ctx, refusal });
    }
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
    if (!svc && framed) {
      log.warn({ proto }, 'stream for an unknown service');
      const refusal = { status: 404, code: ErrorCode.notFound, message: `no such service "${service}"` };
      return this.exchanges.serve(stream, { ...ctx, refusal });
    }
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
    if (framed) {
      const forwarder = this.http.get(service)?.forwarder;
      if (forwarder)
        return this.exchanges.serve(stream, { ...ctx, config: svc, ...forwarder.adopt(stream, direction) });
      if (isH2Target(svc.target)) {
        // A reload that changes the service (its target, its TLS) applies to the streams already pooled: each
        // exchange reads the service as now configured, and a stream adopted under other settings ends after its
        // exchange (the opener's next one goes on a new stream). Ending an idle one at once would race the
        // opener's next request on it.
        const key = this.h2Keys.get(service);
        const router = this;
        return this.exchanges.serve(stream, {
          ...ctx,
          get config() {
            return Object.hasOwn(router.services, service) ? router.services[service] : svc;
          },
          retiring: () => this.h2Keys.get(service) !== key,
        });
      }
      const message = `service "${service}" is not an HTTP service`;
      return this.exchanges.serve(stream, {
        ...ctx,
        refusal: { status: 502, code: ErrorCode.badGateway, message },
      });
    }
    if (isH2Target(svc.target)) {
      // An HTTP/1.1 (or raw TCP) opener for an HTTP/2 app: not carried (an h2c or h2 app does not speak HTTP/1.1).
      log.warn({ proto }, 'a non-HTTP/2 stream for an h2c:// service; closing it');
      stream.destroy();
      return;
    }
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
    this.h2.close();
  }

  destroy(): void {
    this.h2.destroy();
    for (const h of this.http.values()) h.forwarder.destroy();
  }
}
