/**
 * HTTP forwarding, used by both directions: `proxyRequest` sends one parsed request through an undici dispatcher
 * and streams the answer back (bodies are never buffered whole; backpressure holds both ways), `observe` counts
 * and logs each exchange, and `HttpForwarder` serves the HTTP exchanges arriving on accepted streams by handing
 * each stream to a local http.Server (so every request is parsed, hooked and measured) and forwarding to the
 * configured `http://host:port` target.
 */
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import { type Dispatcher, Pool } from 'undici';
import type { Stream } from '../../sdk/index.js';
import type { HttpServerConfig, ServiceConfig } from '../config/schema.js';
import { type AccessLog, logPath, REQUEST_ID_HEADER, requestId } from '../observe/access-log.js';
import type { Logger } from '../observe/logger.js';
import { type Direction, type HttpSeries, type Metrics, methodLabel } from '../observe/metrics.js';
import { headerCarrier, type SpanHandle, type Tracing } from '../observe/tracing.js';
import type { HookRunner } from '../policy/hooks.js';
import { admitUpgrade, bodyStarted, createHttpServer, type RefusalSink } from './http-server.js';
import {
  classify,
  deniedCode,
  ErrorCode,
  forwardHeaders,
  hasBody,
  IDEMPOTENT,
  rawErrorResponse,
  responseHeaders,
  sendDenied,
  sendError,
} from './http-util.js';
import type { Inflight } from './inflight.js';
import { splice, targetHostPort } from './splice.js';

export interface ProxyOptions {
  dispatcher: Dispatcher;
  headersTimeoutMs: number;
  bodyTimeoutMs: number;
  /** Extra attempts for idempotent requests without a body whose stream failed before an answer. */
  retries: number;
  side: 'upstream' | 'target';
  onRetry?: () => void;
  extraHeaders?: Record<string, string>;
  /** Request headers with this prefix are not forwarded (the sidecar sets its own `x-geminio-` ones). */
  dropPrefix?: string;
}

/**
 * One attempt of an exchange, as an undici dispatch handler: the answer's head and chunks go straight to `res`
 * (no intermediate body stream, no pipeline, no AbortSignal per request); backpressure pauses undici until `res`
 * drains. `settled` resolves with undefined once the answer is complete, or with the error.
 */
class Exchange implements Dispatcher.DispatchHandler {
  controller: Dispatcher.DispatchController | undefined;
  /** Set when the client went away: the attempt in flight (or about to start) is aborted. */
  gone = false;
  /** Set once the answer is complete. */
  done = false;
  private settle!: (err?: Error) => void;
  readonly settled = new Promise<Error | undefined>((resolve) => {
    this.settle = resolve;
  });
  private waitingDrain = false;
  private readonly resume = () => {
    this.waitingDrain = false;
    this.controller?.resume();
  };

  constructor(
    private readonly res: ServerResponse,
    private readonly body: IncomingMessage | undefined,
  ) {}

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.controller = controller;
    if (this.gone) controller.abort(new Error('client went away'));
  }

  onResponseStart(
    controller: Dispatcher.DispatchController,
    statusCode: number,
    headers: Record<string, string | string[] | undefined>,
  ): void {
    if (statusCode < 200) return; // 1xx: informational, the final answer follows
    // Answered already by the sidecar (a 408 for a stalled body) or gone: this answer has nowhere to go.
    if (this.res.headersSent || this.res.destroyed)
      return controller.abort(new Error('request already answered'));
    this.res.writeHead(statusCode, responseHeaders(headers));
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.res.destroyed || this.res.writableEnded) return controller.abort(new Error('client went away'));
    countResponse(this.res, chunk.length);
    if (!this.res.write(chunk) && !this.waitingDrain) {
      this.waitingDrain = true;
      controller.pause();
      this.res.once('drain', this.resume);
    }
  }

  onResponseEnd(): void {
    this.done = true;
    this.res.end();
    this.settle(undefined);
  }

  onResponseError(_c: Dispatcher.DispatchController, err: Error): void {
    this.done = true;
    if (this.body) {
      this.body.on('error', noop);
      // Once the answer started, the exchange is broken: as undici's request() does, the request body still
      // streaming is destroyed with the error. Before that the client gets an error answer (503 when the target
      // is down, as without a body), and its unread body is dropped with the connection after it.
      if (this.res.headersSent) this.body.destroy(err);
    }
    this.settle(err);
  }
}

function noop(): void {}

/** Forwards one request; answers 502/503/504 JSON when no answer came. Aborts upstream if the client leaves. */
export async function proxyRequest(
  req: IncomingMessage,
  res: ServerResponse,
  o: ProxyOptions,
): Promise<void> {
  const withBody = hasBody(req);
  const replayable = IDEMPOTENT.has(req.method ?? '') && !withBody;
  const headers = forwardHeaders(req.headers, o.extraHeaders, o.dropPrefix);
  // A body that has not started holds nothing yet: the pooled connection is taken once it sends (or is refused).
  if (withBody && !(await bodyStarted(req))) return;
  let current: Exchange | undefined;
  // The client went away, or the sidecar answered it itself (408 for a stalled body): the attempt in flight is
  // aborted, which frees its pooled connection (undici's bodyTimeout does not run while a response is paused).
  const abandon = (why: string) => {
    if (!current || current.done) return;
    current.gone = true;
    current.controller?.abort(new Error(why));
  };
  res.once('close', () => {
    if (!res.writableFinished) abandon('client went away');
  });
  res.once('finish', () => abandon('request already answered'));
  // The connection itself: a peer that ended (a stream's Dismiss, a FIN) or failed will not read this answer.
  // Watched on the socket, since its close (and so the response's) may never come while writes are pending on a
  // zero window; the socket is destroyed so that nothing waits on it.
  const socket = req.socket as Duplex | null;
  const gone = () => {
    if (res.writableFinished) return;
    abandon('client went away');
    res.destroy();
  };
  socket?.once('end', gone);
  socket?.once('error', gone);
  socket?.once('close', gone);
  const unwatch = () => {
    socket?.off('end', gone);
    socket?.off('error', gone);
    socket?.off('close', gone);
  };
  res.once('finish', unwatch);
  res.once('close', unwatch);
  for (let attempt = 0; ; attempt++) {
    const exchange = new Exchange(res, withBody ? req : undefined);
    current = exchange;
    try {
      o.dispatcher.dispatch(
        {
          path: req.url ?? '/',
          method: (req.method ?? 'GET') as Dispatcher.HttpMethod,
          headers,
          body: withBody ? req : undefined,
          headersTimeout: o.headersTimeoutMs,
          bodyTimeout: o.bodyTimeoutMs,
        },
        exchange,
      );
    } catch (err) {
      exchange.onResponseError(undefined as unknown as Dispatcher.DispatchController, err as Error);
    }
    const err = await exchange.settled;
    if (err === undefined || res.writableEnded) return;
    if (exchange.gone || res.headersSent || res.destroyed) {
      res.destroy();
      return;
    }
    const failure = classify(err, o.side);
    if (replayable && attempt < o.retries && failure.status !== 504) {
      o.onRetry?.();
      continue;
    }
    // An unread body must not be parsed as the next request: the connection closes after this answer.
    if (withBody && !req.complete) res.setHeader('connection', 'close');
    sendError(res, failure.status, failure.code, failure.message);
    return;
  }
}

export interface UpgradeOptions {
  /** A fresh connection to the far side (a TCP socket to the target, or a new stream). */
  connection: Duplex;
  /** Headers the sidecar sets (identity), and the prefix of client headers dropped. */
  extraHeaders?: Record<string, string>;
  dropPrefix?: string;
  /** The 503 the client gets when the far side cannot be reached before it answered. */
  unavailable: (err: Error) => string;
  /** After a non-101 answer: gives the client connection back to the HTTP server with the bytes already read. */
  resumeHttp: (socket: Duplex, head: Buffer) => void;
  onDone: () => void;
}

/**
 * An Upgrade request (WebSocket): its head (already decided) is sent on a fresh connection, and the sockets are
 * spliced only when the far side answers 101. Any other answer is an ordinary response: it is relayed, and the
 * client connection goes on as HTTP (its next request is parsed and decided like any other). Bytes that followed
 * the client's head are never forwarded before a 101.
 */
export function relayUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer, o: UpgradeOptions): void {
  const headers: Record<string, string | string[]> = {
    ...forwardHeaders(req.headers, o.extraHeaders, o.dropPrefix),
    connection: 'upgrade',
    upgrade: String(req.headers.upgrade),
  };
  let finished = false;
  const done = () => {
    if (finished) return;
    finished = true;
    o.onDone();
  };
  const up = http.request({
    method: req.method,
    path: req.url,
    headers,
    setHost: false,
    createConnection: () => o.connection as net.Socket,
  });
  up.on('upgrade', (res: IncomingMessage, upSocket: Duplex, upHead: Buffer) => {
    let text = `HTTP/1.1 101 ${res.statusMessage || 'Switching Protocols'}\r\n`;
    for (let i = 0; i < res.rawHeaders.length; i += 2)
      text += `${res.rawHeaders[i]}: ${res.rawHeaders[i + 1]}\r\n`;
    socket.write(`${text}\r\n`);
    if (upHead.length > 0) socket.write(upHead);
    if (head.length > 0) upSocket.write(head);
    splice(socket, upSocket, done);
  });
  up.on('response', (res: IncomingMessage) => {
    const noBody = req.method === 'HEAD' || res.statusCode === 204 || res.statusCode === 304;
    let text = `HTTP/1.1 ${res.statusCode} ${res.statusMessage || ''}\r\n`;
    const out = responseHeaders(res.headers);
    for (const [k, v] of Object.entries(out)) {
      if (k === 'content-length' || v === undefined) continue;
      for (const one of Array.isArray(v) ? v : [v]) text += `${k}: ${one}\r\n`;
    }
    if (!noBody) text += 'transfer-encoding: chunked\r\n';
    socket.write(`${text}\r\n`);
    res.on('data', (chunk: Buffer) => {
      if (noBody || chunk.length === 0) return;
      if (!socket.write(`${chunk.length.toString(16)}\r\n`) || !socket.write(chunk) || !socket.write('\r\n'))
        res.pause();
    });
    socket.on('drain', () => res.resume());
    res.once('end', () => {
      socket.removeAllListeners('drain');
      if (!noBody) socket.write('0\r\n\r\n');
      o.connection.destroy();
      done();
      o.resumeHttp(socket, head);
    });
    res.once('error', () => socket.destroy());
  });
  up.on('error', (err: Error) => {
    done();
    if (!socket.destroyed) socket.end(o.unavailable(err));
  });
  socket.once('close', () => {
    if (!finished) up.destroy();
  });
  up.end();
}

export interface ObserveInfo {
  listener: string;
  direction: Direction;
  /** The listener's series (listener, service, upstream labels). */
  series: HttpSeries;
  clientId?: string;
  streamId?: string;
  metrics: Metrics;
  logger: Logger;
  inflight: Inflight;
  accessLog: AccessLog;
  tracing: Tracing;
}

/** What observe() learned about an exchange, for the handler (its spans, the decision to record). */
export interface Observed {
  requestId: string;
  /** The server span (the request as received); undefined when tracing is off or not sampled. */
  span: SpanHandle | undefined;
  /** Records the authorization decision on the spans. */
  decided(allow: boolean): void;
}

/** Response body bytes written to the client, counted by the Exchange. */
const RESPONSE_BYTES = new WeakMap<ServerResponse, number>();

function countResponse(res: ServerResponse, n: number): void {
  RESPONSE_BYTES.set(res, (RESPONSE_BYTES.get(res) ?? 0) + n);
}

/** Request body bytes: the declared length, or (chunked) what the parser pushed. */
function requestBytes(req: IncomingMessage): () => number {
  const declared = req.headers['content-length'];
  if (declared !== undefined) {
    const n = Number(declared);
    return () => (Number.isFinite(n) ? n : 0);
  }
  if (!hasBody(req)) return () => 0;
  let n = 0;
  const push = req.push.bind(req);
  req.push = (chunk: unknown, encoding?: BufferEncoding) => {
    if (chunk && typeof (chunk as Buffer).length === 'number') n += (chunk as Buffer).length;
    return push(chunk, encoding);
  };
  return () => n;
}

/**
 * The access line (and the count) of a request refused by the parser or the limits before any handler saw it.
 */
export function refusalLogger(series: HttpSeries, direction: Direction, accessLog: AccessLog): RefusalSink {
  return (logger, status, reason, req, socket) => {
    series.refused(methodLabel(req?.method), status);
    if (!accessLog.wants(logger, status)) return;
    accessLog.write(logger, {
      listener: series.listener,
      direction,
      service: series.service,
      upstream: series.upstream,
      requestId: req ? requestId(req) : undefined,
      method: req?.method,
      path: accessLog.path(req?.url),
      status,
      peer: socket.remoteAddress,
      host: req?.headers.host,
      userAgent: req?.headers['user-agent'],
      bytesIn: 0,
      bytesOut: 0,
      completed: false,
      refused: reason,
    });
  };
}

/**
 * Counts the exchange in flight, and when it ends: metrics, spans and one access-log line. Keeps the request's
 * x-request-id (or sets a new one, which the app then gets), and when tracing is on starts the server span and a
 * client span whose context replaces the request's traceparent/tracestate (so the far side is its child).
 */
export function observe(req: IncomingMessage, res: ServerResponse, info: ObserveInfo): Observed {
  const started = process.hrtime.bigint();
  const done = info.inflight.begin();
  const { series } = info;
  series.inFlight.inc();
  const rid = requestId(req);
  if (!res.headersSent) res.setHeader(REQUEST_ID_HEADER, rid);
  const inBytes = requestBytes(req);
  let span: SpanHandle | undefined;
  let client: SpanHandle | undefined;
  let decision: string | undefined;
  if (info.tracing.enabled) {
    const attributes = {
      'http.request.method': req.method,
      'url.path': logPath(req.url, true),
      'geminio.listener': info.listener,
      'geminio.direction': info.direction,
      'geminio.service': series.service,
      'geminio.upstream': series.upstream,
      'geminio.client_id': info.clientId,
      'geminio.stream_id': info.streamId,
      'geminio.request_id': rid,
    };
    span = info.tracing.start(
      `${info.listener} ${methodLabel(req.method)}`,
      'server',
      headerCarrier(req.headers),
      attributes,
    );
    if (span) {
      client = info.tracing.start(`${series.service} ${methodLabel(req.method)}`, 'client', span, {
        'geminio.service': series.service,
        'geminio.upstream': series.upstream,
        'geminio.request_id': rid,
      });
      const carrier = (client ?? span).carrier();
      req.headers.traceparent = carrier.traceparent;
      if (carrier.tracestate) req.headers.tracestate = carrier.tracestate;
      else delete req.headers.tracestate;
    }
  }
  res.once('close', () => {
    done();
    series.inFlight.dec();
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    const method = methodLabel(req.method);
    const status = res.headersSent ? res.statusCode : 499; // 499: the client went away before an answer
    const bytesIn = inBytes();
    const bytesOut = RESPONSE_BYTES.get(res) ?? (Number(res.getHeader('content-length')) || 0);
    series.exchange(method, status, seconds, bytesIn, bytesOut);
    if (span) {
      const error = status >= 500 || !res.writableFinished ? `status ${status}` : undefined;
      client?.set({ 'http.response.status_code': status, 'geminio.authz.decision': decision });
      client?.end(error);
      span.set({
        'http.response.status_code': status,
        'geminio.authz.decision': decision,
        'http.request.body.size': bytesIn,
        'http.response.body.size': bytesOut,
      });
      span.end(error);
    }
    // The access line only when it is written: building it is most of what an exchange costs here otherwise.
    if (!info.accessLog.wants(info.logger, status)) return;
    info.accessLog.write(info.logger, {
      listener: info.listener,
      direction: info.direction,
      service: series.service,
      upstream: series.upstream,
      clientId: info.clientId,
      streamId: info.streamId,
      requestId: rid,
      traceId: span?.traceId,
      spanId: span?.spanId,
      method: req.method,
      path: info.accessLog.path(req.url),
      status,
      peer: req.socket?.remoteAddress,
      host: req.headers.host,
      userAgent: req.headers['user-agent'],
      bytesIn,
      bytesOut,
      completed: res.writableFinished,
      durationMs: Math.round(seconds * 1e6) / 1e3,
    });
  });
  return {
    requestId: rid,
    span,
    decided: (allow) => {
      decision = allow ? 'allow' : 'deny';
    },
  };
}

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
  /** Who opened each stream: a remote End on the inbound listener, or the server of a `serve` upstream. */
  private readonly directions = new WeakMap<object, Direction>();
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
    this.directions.set(stream, direction);
    this.active.set(stream, 0);
    this.series.connections.inc();
    stream.once('close', () => {
      this.series.connections.dec();
      this.active.delete(stream);
      if (this.active.size === 0) this.drained?.();
    });
    this.server.emit('connection', stream);
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const stream = req.socket as unknown as Stream;
    const ids = { clientId: String(stream.clientId), streamId: String(stream.streamId) };
    const direction = this.directions.get(stream) ?? 'inbound';
    const seen = observe(req, res, {
      ...this.deps,
      listener: 'inbound',
      series: this.series,
      direction,
      ...ids,
    });
    this.active.set(stream, (this.active.get(stream) ?? 0) + 1);
    res.once('close', () => {
      const left = (this.active.get(stream) ?? 1) - 1;
      if (this.active.has(stream)) this.active.set(stream, left);
      if (this.retired && left === 0 && !stream.destroyed) stream.end();
    });
    if (this.retired) res.setHeader('connection', 'close');
    const decision = await this.deps.hooks.decide('request', {
      ...ids,
      method: req.method,
      path: req.url,
      headers: req.headers,
      service: this.service,
      direction,
    });
    seen.decided(decision.allow);
    if (!decision.allow) {
      // A denied body is not worth reading: close the stream after the answer instead of draining it.
      if (hasBody(req)) res.setHeader('connection', 'close');
      return sendDenied(res, decision);
    }
    // Identity headers come from the sidecar only: the client's own x-geminio-* headers are dropped, and plugin
    // headers cannot replace the sidecar's.
    const identity: Record<string, string> = { 'x-geminio-client-id': ids.clientId };
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
      direction: this.directions.get(stream) ?? 'inbound',
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
