/**
 * An outbound HTTP listener: a local HTTP server (HTTP/1.1 and HTTP/2 on one port) whose requests travel to a
 * service behind an End. With `tls`, connections are TLS and ALPN chooses HTTP/2 (h2) or HTTP/1.1; without, the
 * first bytes do (the HTTP/2 preface: h2c). Requests of both protocols go as exchanges on pooled, persistent
 * geminio streams (the exchange proto, ../proxy/exchange.ts): one pool per endpoint, each stream carrying one
 * exchange at a time, reused for the next. For an endpoint whose inbound predates that proto, HTTP/1.1 goes through
 * an undici Pool whose connections are "http" streams, and HTTP/2 on one "h2" stream per request. Upgrades
 * (WebSocket) get a fresh "http" stream each, spliced to the client socket. `/rpc/` and `/publish/` go to the
 * gateway (over HTTP/1.1 and HTTP/2).
 */
import type http from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import http2 from 'node:http2';
import type net from 'node:net';
import type { Duplex } from 'node:stream';
import tls from 'node:tls';
import type { End, Stream } from '../../sdk/index.js';
import type { Http2Config, HttpOutboundConfig, HttpServerConfig } from '../config/schema.js';
import { type ConfigProblem, formatProblem } from '../config/validate.js';
import { listenOn } from '../net/listen.js';
import { materialKey, readTlsMaterial, serverTls, type TlsMaterial } from '../net/tls.js';
import { Pool } from '../net/undici.js';
import { type AccessLog, type ObserveInfo, observe, refusalLogger } from '../observe/access-log.js';
import type { Logger } from '../observe/logger.js';
import type { Direction, HttpSeries, Metrics } from '../observe/metrics.js';
import type { Tracing } from '../observe/tracing.js';
import type { HookFacts, HookRunner } from '../policy/hooks.js';
import { EXCHANGE_PROTO, ExchangePool } from '../proxy/exchange.js';
import { H2Observation, h2SessionOptions, serveOutboundH2 } from '../proxy/h2.js';
import { type ProxyOptions, proxyRequest, relayUpgrade } from '../proxy/http.js';
import { admit, admitUpgrade, createHttpServer } from '../proxy/http-server.js';
import {
  deniedCode,
  ErrorCode,
  rawErrorResponse,
  sendDenied,
  sendError,
  UpstreamUnavailableError,
} from '../proxy/http-util.js';
import type { Inflight } from '../proxy/inflight.js';
import { streamMeta } from '../proxy/stream-meta.js';
import { type GatewayContext, handlePublish, handleRpc } from './gateway.js';
import { type EndSource, type Lease, lease } from './upstreams.js';

export interface ListenerDeps {
  metrics: Metrics;
  logger: Logger;
  hooks: HookRunner;
  inflight: Inflight;
  httpServer: HttpServerConfig;
  http2: Http2Config;
  accessLog: AccessLog;
  tracing: Tracing;
}

/** The HTTP/2 connection preface (RFC 9113 §3.4): a client with prior knowledge sends it first. */
const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

/** The settings of an HTTP listener (an outbound listener's, or a tunnel's with defaults). */
export type HttpListenerConfig = Omit<HttpOutboundConfig, 'upstream'>;

export class HttpOutboundListener {
  private readonly server: http.Server;
  /** The HTTP/2 side of the same port: connections that open with the preface are its sessions (h2c). */
  private readonly h2: http2.Http2Server;
  private readonly h2Sessions = new Set<http2.ServerHttp2Session>();
  /** The HTTP/1.1 server's own connection handler (connections reach it after the first bytes were read). */
  private readonly http1Connection: (socket: net.Socket) => void;
  /** Keep-alive pooling per endpoint: the exchange streams to each endpoint (both protocols share them). */
  private readonly pools = new Map<string, ExchangePool>();
  private readonly log: Logger;
  private readonly rpc: GatewayContext;
  private readonly publish: GatewayContext;
  private readonly series: HttpSeries;
  /** With `tls`: the TLS side of each connection (made in start()); ALPN hands it to HTTP/2 or HTTP/1.1. */
  private tls: tls.Server | undefined;
  private material: TlsMaterial = {};
  private closing = false;
  /** What the exchanges are observed with, per End (each endpoint's End, and each reconnect, has its own ClientID). */
  private readonly infos = new WeakMap<End, ObserveInfo>();
  /** The same while there is no End. */
  private noEndInfo: ObserveInfo | undefined;
  /** What every request's attempts share (made once; each request's own state is an Attempts). */
  private readonly attempts: AttemptContext;

  constructor(
    readonly config: HttpListenerConfig,
    private readonly source: EndSource,
    private readonly direction: Direction,
    private readonly deps: ListenerDeps,
  ) {
    this.log = deps.logger.child({ listener: config.name });
    const gateway = { listener: config.name, direction, source, ...deps };
    this.rpc = { ...gateway, timeoutMs: config.rpc.timeoutMs, maxBodyBytes: config.rpc.maxBodyBytes };
    this.publish = {
      ...gateway,
      timeoutMs: config.publish.timeoutMs,
      maxBodyBytes: config.publish.maxBodyBytes,
    };
    this.series = deps.metrics.httpSeries(config.name, config.service, source.name);
    this.attempts = {
      source,
      config,
      log: this.log,
      pool: (l) => this.poolFor(l),
      onRetry: () => deps.metrics.httpRetries.inc({ listener: config.name }),
    };
    this.server = createHttpServer(
      deps.httpServer,
      {
        keepAliveTimeoutMs: 5_000,
        logger: this.log,
        onRefused: refusalLogger(this.series, direction, deps.accessLog),
      },
      (req, res) => void this.handle(req, res, false),
    );
    this.server.on('connection', (socket: net.Socket) => {
      this.series.connections.inc();
      socket.once('close', () => this.series.connections.dec());
    });
    // Expect: 100-continue ends here (undici cannot send it): the hook decides first, then 100 Continue is sent
    // and the body streams to the far side as it arrives.
    this.server.on('checkContinue', (req: IncomingMessage, res: ServerResponse) => {
      if (admit(req, res, deps.httpServer, this.log)) void this.handle(req, res, true);
    });
    this.server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      if (admitUpgrade(req, socket, deps.httpServer, this.log)) void this.upgrade(req, socket, head);
    });
    // One port, both protocols: the first bytes of a connection decide (the preface: HTTP/2, else HTTP/1.1).
    const http1 = this.server.listeners('connection')[0] as (socket: net.Socket) => void;
    this.server.removeListener('connection', http1);
    this.http1Connection = (socket) => http1.call(this.server, socket);
    this.server.on('connection', (socket: net.Socket) =>
      this.tls ? this.tls.emit('connection', socket) : this.sniff(socket),
    );
    this.h2 = http2.createServer(h2SessionOptions(deps.http2));
    this.h2.on('session', (session: http2.ServerHttp2Session) => {
      this.h2Sessions.add(session);
      session.on('error', (err: Error) => this.log.debug({ err: err.message }, 'h2 session error'));
      session.once('close', () => this.h2Sessions.delete(session));
      // A session with no frames either way for keepAliveTimeoutMs is closed: idle, or a peer gone without a word
      // whose streams wait on flow control (a dropped connection is not always seen at once).
      session.setTimeout(config.keepAliveTimeoutMs, () => session.destroy());
      if (this.closing) session.close();
    });
    const { service } = config;
    this.h2.on('stream', (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders) => {
      if (this.gatewayH2(stream, headers)) return;
      void serveOutboundH2(
        stream,
        headers,
        {
          listener: config.name,
          service,
          direction,
          protocol: this.tls ? 'h2' : 'h2c',
          upstreamName: source.name,
          lease: () => lease(source),
          pool: (l) => this.poolFor(l as Lease),
          open: (end) => this.openStream(end, 'h2'),
        },
        { ...deps, logger: this.log },
      );
    });
  }

  /** Reads the first bytes of a connection: the HTTP/2 preface hands it to the h2c server, anything else to 1.1. */
  private sniff(socket: net.Socket): void {
    let seen: Buffer = Buffer.alloc(0);
    const onData = (chunk: Buffer) => {
      seen = seen.length === 0 ? chunk : Buffer.concat([seen, chunk]);
      const n = Math.min(seen.length, PREFACE.length);
      const h2 = seen.subarray(0, n).equals(PREFACE.subarray(0, n));
      if (h2 && seen.length < PREFACE.length) return; // a prefix of the preface so far: wait for more
      socket.off('data', onData);
      socket.off('end', onEnd);
      if (h2) {
        socket.pause();
        socket.unshift(seen);
        this.h2.emit('connection', socket);
        // The session took the bytes read so far; flowing again, the socket sees its end (a client that just
        // drops the connection) and closes, which closes the session and resets its streams.
        setImmediate(() => socket.resume());
      } else {
        // The HTTP/1.1 server reads the socket's handle directly (an unshifted chunk would never reach its
        // parser), so the bytes already read are given to it as the first 'data' it sees.
        this.http1Connection(socket);
        socket.emit('data', seen);
      }
    };
    // Nothing sent before the end (a bare connect): HTTP/1.1 answers it as it would.
    const onEnd = () => {
      socket.off('data', onData);
      this.http1Connection(socket);
    };
    socket.on('data', onData);
    socket.once('end', onEnd);
    // A connection that sends nothing is the HTTP/1.1 server's to time out (headersTimeoutMs).
    socket.setTimeout(this.deps.httpServer.headersTimeoutMs, () => {
      socket.setTimeout(0);
      if (seen.length === 0 && socket.listenerCount('data') > 0) {
        socket.off('data', onData);
        socket.off('end', onEnd);
        this.http1Connection(socket);
      }
    });
    socket.once('data', () => socket.setTimeout(0));
  }

  get name(): string {
    return this.config.name;
  }

  /** The exchange pool of the lease's endpoint (made on first use; closed when the endpoint goes for good). */
  private poolFor(l: Lease): ExchangePool {
    let pool = this.pools.get(l.key);
    if (pool) return pool;
    const { config, deps } = this;
    pool = new ExchangePool({
      current: () => l.current(),
      open: (end) => this.openStream(end, EXCHANGE_PROTO),
      maxStreams: config.maxStreams,
      keepAliveTimeoutMs: config.keepAliveTimeoutMs,
      minTimeoutMs: Math.min(config.headersTimeoutMs, config.bodyTimeoutMs),
      maxHeadBytes: deps.http2.maxHeaderListBytes * 2,
      legacy: () => this.legacyPool(l),
      onLegacy: () =>
        this.log.info(
          { endpoint: l.endpoint },
          'the inbound does not know the exchange proto; using http streams',
        ),
      describe: `endpoint ${l.endpoint} of upstream ${this.source.name}`,
    });
    this.pools.set(l.key, pool);
    const made = pool;
    l.onGone(() => {
      if (this.pools.get(l.key) === made) this.pools.delete(l.key);
      made.close().catch(() => {});
    });
    return pool;
  }

  /** Opens a stream to the service (counted in the stream metrics, or as an open failure). */
  private async openStream(end: End, proto: 'http' | 'h2' | typeof EXCHANGE_PROTO): Promise<Stream> {
    const { service } = this.config;
    try {
      const stream = await end.openStream({ meta: streamMeta(service, proto) });
      this.deps.metrics.trackStream(stream, this.direction, service);
      return stream;
    } catch (err) {
      this.deps.metrics.streamOpenFailures.inc({ direction: this.direction, service });
      throw err;
    }
  }

  /** For an inbound before the exchange proto: an undici Pool whose connections are "http" streams. */
  private legacyPool(l: Lease): Pool {
    const { config, source } = this;
    return new Pool(`http://${config.service}`, {
      connections: config.maxStreams,
      keepAliveTimeout: config.keepAliveTimeoutMs,
      headersTimeout: config.headersTimeoutMs,
      bodyTimeout: config.bodyTimeoutMs,
      connect: (_options, callback) => {
        const end = l.current();
        if (!end) {
          const why = `endpoint ${l.endpoint} of upstream ${source.name} is not connected`;
          callback(new UpstreamUnavailableError(why), null);
          return;
        }
        this.openStream(end, 'http').then(
          (stream) => callback(null, stream as unknown as net.Socket),
          (err: Error) => callback(err, null),
        );
      },
    });
  }

  /** Binds the listening address (with `tls`, after reading the certificate files: bad ones fail the start). */
  async start(): Promise<void> {
    if (this.config.tls?.enabled) this.startTls();
    await listenOn(this.server, this.config.listen);
    const { listen, service } = this.config;
    this.log.info({ listen, service, tls: this.tls !== undefined }, 'http listener started');
  }

  private get tlsPath(): string {
    return `outbound.http(${this.config.name}).tls`;
  }

  /**
   * The TLS side: a tls.Server that never listens, handed each accepted connection. It does the handshake (within
   * headersTimeoutMs) and ALPN offers h2 then http/1.1: h2 goes to the HTTP/2 server, http/1.1 (or a client
   * without ALPN) to the HTTP/1.1 one, with its limits, upgrades and gateway as on a plaintext port.
   */
  private startTls(): void {
    const { material, problems } = readTlsMaterial(this.config.tls, this.tlsPath);
    if (problems.length > 0) throw new Error(`TLS files: ${problems.map(formatProblem).join('; ')}`);
    this.material = material;
    this.tls = tls.createServer({
      ...serverTls(this.config.tls, material),
      ALPNProtocols: ['h2', 'http/1.1'],
      handshakeTimeout: this.deps.httpServer.headersTimeoutMs,
    });
    this.tls.on('secureConnection', (socket: tls.TLSSocket) => {
      if (socket.alpnProtocol === 'h2') this.h2.emit('connection', socket);
      else this.http1Connection(socket);
    });
    this.tls.on('tlsClientError', (err: Error, socket: tls.TLSSocket) => {
      this.log.debug({ err: err.message, peer: socket.remoteAddress }, 'TLS handshake failed');
      socket.destroy();
    });
  }

  /**
   * Reads the certificate, key and CA files again; a valid new set serves the handshakes to come (open
   * connections keep theirs), an invalid one is refused and the running set stays.
   */
  reloadTls(): { problems: ConfigProblem[]; changed: boolean } {
    if (!this.tls) return { problems: [], changed: false };
    const { material, problems } = readTlsMaterial(this.config.tls, this.tlsPath);
    if (problems.length > 0) return { problems, changed: false };
    if (materialKey(material) === materialKey(this.material)) return { problems, changed: false };
    this.tls.setSecureContext(material);
    this.material = material;
    return { problems, changed: true };
  }

  /**
   * `POST /rpc/<method>` and `/publish/<topic>` over HTTP/2 (h2c or h2): the same gateway as over HTTP/1.1, on
   * Node's HTTP/2 compatibility request and response (made here as the HTTP/2 server makes them for its 'request'
   * event; only for these paths, the other streams are carried as they are). False: not a gateway request.
   */
  private gatewayH2(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders): boolean {
    if (headers[':method'] !== 'POST') return false;
    const path = String(headers[':path'] ?? '');
    const rpc = this.config.rpc.enabled && path.startsWith('/rpc/');
    if (!rpc && !(this.config.publish.enabled && path.startsWith('/publish/'))) return false;
    stream.on('error', () => {});
    // rawHeaders (names and values in turn) rebuilt from the parsed headers: HTTP/2 names are lowercase anyway.
    const raw = Object.entries(headers).flatMap(([k, v]) =>
      v === undefined ? [] : Array.isArray(v) ? v.flatMap((x) => [k, x]) : [k, String(v)],
    );
    const end = this.source.current();
    const obs = new H2Observation(
      this.deps,
      {
        listener: this.config.name,
        service: this.config.service,
        upstream: this.source.name,
        direction: this.direction,
        protocol: this.tls ? 'h2' : 'h2c',
        clientId: end ? String(end.clientId) : undefined,
        method: 'POST',
        path,
        grpc: false,
      },
      headers,
    );
    // The call or message carries the client span's context across the geminio hop (in custom), as over HTTP/1.1.
    obs.inject(headers);
    const req = new http2.Http2ServerRequest(stream, headers, {}, raw);
    const res = new http2.Http2ServerResponse(stream);
    stream.once('close', () => {
      if (res.headersSent) obs.noteHead({ status: res.statusCode, headers: {} });
      obs.finish(res.writableEnded ? 'completed' : 'reset');
    });
    // A client that waits for 100 (Continue) before its body gets it, as over HTTP/1.1 (RFC 9110 §10.1.1).
    if (String(headers.expect ?? '').toLowerCase() === '100-continue') res.writeContinue();
    void (rpc ? handleRpc(req, res, this.rpc) : handlePublish(req, res, this.publish));
    return true;
  }

  address(): net.AddressInfo {
    return this.server.address() as net.AddressInfo;
  }

  private async handle(req: IncomingMessage, res: ServerResponse, expectContinue: boolean): Promise<void> {
    const url = req.url ?? '/';
    const gateway =
      req.method === 'POST' &&
      ((this.config.rpc.enabled && url.startsWith('/rpc/')) ||
        (this.config.publish.enabled && url.startsWith('/publish/')));
    if (gateway) {
      observe(req, res, this.infoFor(this.source.current()));
      if (this.closing) res.setHeader('connection', 'close');
      if (expectContinue) res.writeContinue();
      return url.startsWith('/rpc/') ? handleRpc(req, res, this.rpc) : handlePublish(req, res, this.publish);
    }
    // The first attempt's endpoint is chosen before the request is decided: the hooks, the metrics and the access
    // line see the ClientID of the connection it goes on (each endpoint of an upstream has its own).
    const attempts = new Attempts(this.attempts);
    const end = attempts.first()?.end ?? this.source.current();
    const info = this.infoFor(end);
    const seen = observe(req, res, info);
    if (this.closing) res.setHeader('connection', 'close');
    const facts: HookFacts = {
      clientId: info.clientId,
      method: req.method,
      path: url,
      headers: req.headers,
      service: this.config.service,
      direction: this.direction,
      listener: this.config.name,
    };
    const decision =
      this.deps.hooks.decideNow('request', facts) ?? (await this.deps.hooks.decide('request', facts));
    seen.decided(decision.allow);
    if (!decision.allow) {
      attempts.release();
      return sendDenied(res, decision);
    }
    if (!end) {
      res.setHeader('connection', 'close'); // an unread body must not be parsed as the next request
      return sendError(
        res,
        503,
        ErrorCode.upstreamUnavailable,
        `upstream ${this.source.name} is not connected`,
      );
    }
    if (expectContinue) res.writeContinue();
    return proxyRequest(req, res, attempts);
  }

  /**
   * What the exchanges are observed with: built once per End (each endpoint's End, and each reconnect, has its own
   * ClientID), not per request.
   */
  private infoFor(end: End | undefined): ObserveInfo {
    const known = end ? this.infos.get(end) : this.noEndInfo;
    if (known) return known;
    const { metrics, logger, inflight, accessLog, tracing } = this.deps;
    const info: ObserveInfo = {
      listener: this.config.name,
      series: this.series,
      direction: this.direction,
      clientId: end ? String(end.clientId) : undefined,
      metrics,
      logger,
      inflight,
      accessLog,
      tracing,
    };
    if (end) this.infos.set(end, info);
    else this.noEndInfo = info;
    return info;
  }

  /** Upgrade (WebSocket): a fresh stream, the request head replayed on it, then raw bytes both ways. */
  private async upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    socket.on('error', () => {});
    const end = this.source.current();
    const decision = await this.deps.hooks.decide('request', {
      clientId: end ? String(end.clientId) : undefined,
      method: req.method,
      path: req.url,
      headers: req.headers,
      service: this.config.service,
      direction: this.direction,
      listener: this.config.name,
    });
    if (!decision.allow) {
      const status = decision.status ?? 403;
      return void socket.end(rawErrorResponse(status, deniedCode(status), decision.reason));
    }
    const held = lease(this.source);
    if (!end || !held) {
      return void socket.end(
        rawErrorResponse(503, ErrorCode.upstreamUnavailable, `upstream ${this.source.name} is not connected`),
      );
    }
    const began = this.deps.inflight.begin();
    const t0 = performance.now();
    const done = () => {
      began();
      held.done({ ok: true, ms: performance.now() - t0 });
    };
    try {
      const stream = await held.end.openStream({ meta: streamMeta(this.config.service, 'http') });
      this.deps.metrics.trackStream(stream, this.direction, this.config.service);
      relayUpgrade(req, socket, head, {
        connection: stream,
        unavailable: (err) => rawErrorResponse(503, ErrorCode.upstreamUnavailable, err.message),
        resumeHttp: (s, rest) => {
          if (rest.length > 0) s.unshift(rest);
          this.http1Connection(s as net.Socket);
        },
        onDone: done,
      });
    } catch (err) {
      began();
      held.done({ ok: false });
      socket.end(rawErrorResponse(503, ErrorCode.upstreamUnavailable, (err as Error).message));
    }
  }

  /** Stops accepting connections; idle keep-alive connections close, busy ones close after their response. */
  stopAccepting(): void {
    if (this.closing) return;
    this.closing = true;
    this.server.close();
    this.server.closeIdleConnections();
    for (const s of this.h2Sessions) s.close(); // GOAWAY: streams in flight finish
  }

  /** Stops accepting, then closes the pool (its idle streams end; requests in flight finish first). */
  async close(): Promise<void> {
    this.stopAccepting();
    await Promise.all([...this.pools.values()].map((p) => p.close()));
  }

  /** Drops every connection and stream now. */
  destroy(): void {
    this.stopAccepting();
    this.server.closeAllConnections();
    for (const s of this.h2Sessions) s.destroy();
    for (const p of this.pools.values()) p.destroy();
  }
}

/** What the attempts of every request of a listener share. */
interface AttemptContext {
  source: EndSource;
  config: HttpListenerConfig;
  log: Logger;
  pool: (l: Lease) => ExchangePool;
  onRetry: () => void;
}

/**
 * One request's attempts, as proxyRequest's options: each attempt picks an endpoint; a retry (idempotent, no body)
 * goes to another one when there is another. One object per request (not an options object and three closures).
 */
class Attempts implements ProxyOptions {
  readonly headersTimeoutMs: number;
  readonly bodyTimeoutMs: number;
  readonly retries: number;
  readonly side = 'upstream' as const;
  /** The endpoints tried before the current attempt's (made on the first retry). */
  private tried: Set<string> | undefined;
  private held: Lease | undefined;
  /** `held` was taken by first() and its attempt has not begun. */
  private pending = false;
  private started = 0;

  constructor(private readonly ctx: AttemptContext) {
    this.headersTimeoutMs = ctx.config.headersTimeoutMs;
    this.bodyTimeoutMs = ctx.config.bodyTimeoutMs;
    this.retries = ctx.config.retries;
  }

  /** The first attempt's endpoint, leased before the request is decided. */
  first(): Lease | undefined {
    this.held = lease(this.ctx.source);
    this.pending = this.held !== undefined;
    return this.held;
  }

  onNoAttempt(): void {
    this.release();
  }

  /** The request goes nowhere (denied, or gone before it began): the endpoint leased for it is given back. */
  release(): void {
    if (!this.pending) return;
    this.pending = false;
    this.held?.done({ neutral: true });
  }

  attempt(): ExchangePool | undefined {
    const { source } = this.ctx;
    let held: Lease | undefined;
    if (this.pending) {
      this.pending = false;
      held = this.held;
    } else {
      if (this.held) (this.tried ??= new Set()).add(this.held.key);
      held = (this.tried && lease(source, this.tried)) || lease(source);
    }
    this.held = held;
    if (!held) return undefined;
    this.started = performance.now();
    return this.ctx.pool(held);
  }

  onAttemptEnd(r: {
    err?: Error | undefined;
    status?: number | undefined;
    sidecarError: boolean;
    gone: boolean;
  }): void {
    const held = this.held;
    const ms = performance.now() - this.started;
    if (r.gone) held?.done({ neutral: true });
    else if (r.err !== undefined || r.sidecarError) {
      this.ctx.log.debug(
        { endpoint: held?.endpoint, err: r.err?.message, status: r.status },
        'attempt failed',
      );
      held?.done({ ok: false, ms });
    } else held?.done({ ok: true, ms });
  }

  onRetry(): void {
    this.ctx.onRetry();
  }
}
