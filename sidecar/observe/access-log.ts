/**
 * The access log and the HTTP exchange metrics: one line and one observation per HTTP exchange, in either
 * direction, when the exchange ends, and one per request refused by the parser or the limits. Which optional
 * fields are written, whether query strings are redacted, and the share of successful exchanges logged come from
 * the `accessLog` config section. Here too: the request ID (x-request-id) and the exchange's spans.
 */
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { AccessLogConfig, AccessLogField } from '../config/schema.js';
import type { Logger } from './logger.js';
import { type Direction, type HttpSeries, type Metrics, methodLabel } from './metrics.js';
import { headerCarrier, type SpanHandle, type Tracing } from './tracing.js';

export const DEFAULT_ACCESS_LOG: AccessLogConfig = {
  enabled: true,
  fields: [],
  redactQuery: true,
  sampleRatio: 1,
};

/** The request ID header: kept when the client sent a sane one, generated otherwise. */
export const REQUEST_ID_HEADER = 'x-request-id';
const SANE_ID = /^[\x21-\x7e]{1,200}$/;

/** The request's ID (x-request-id): the client's when it sent a sane one, else a new UUID set on the request. */
export function requestId(req: IncomingMessage): string {
  const given = req.headers[REQUEST_ID_HEADER];
  if (typeof given === 'string' && SANE_ID.test(given)) return given;
  const id = randomUUID();
  req.headers[REQUEST_ID_HEADER] = id;
  return id;
}

/** A path with its query string redacted (`/a?REDACTED`), or as sent. */
export function logPath(url: string | undefined, redact: boolean): string | undefined {
  if (url === undefined || !redact) return url;
  const q = url.indexOf('?');
  return q < 0 ? url : `${url.slice(0, q)}?REDACTED`;
}

export type AccessFields = Partial<Record<AccessLogField, unknown>> & {
  method?: string;
  path?: string;
  status: number;
  durationMs?: number;
  refused?: string;
};

export class AccessLog {
  private all = true;
  private wanted: ReadonlySet<string> = new Set();
  config: AccessLogConfig = DEFAULT_ACCESS_LOG;

  constructor(config: AccessLogConfig = DEFAULT_ACCESS_LOG) {
    this.update(config);
  }

  /** Takes a reloaded config section (the listeners keep this object). */
  update(config: AccessLogConfig): void {
    this.config = config;
    this.all = config.fields.length === 0;
    this.wanted = new Set(config.fields);
  }

  /** Whether a line for this status would be written (so callers can skip building it). */
  wants(logger: Logger, status: number): boolean {
    if (!this.config.enabled || !logger.isLevelEnabled('info')) return false;
    if (status >= 400 || this.config.sampleRatio >= 1) return true;
    return Math.random() < this.config.sampleRatio;
  }

  path(url: string | undefined): string | undefined {
    return logPath(url, this.config.redactQuery);
  }

  /** Writes one line with the configured fields (method, path, status and durationMs always). */
  write(logger: Logger, fields: AccessFields): void {
    let line: Record<string, unknown> = fields;
    if (!this.all) {
      line = {};
      for (const [k, v] of Object.entries(fields)) {
        if (k === 'method' || k === 'path' || k === 'status' || k === 'durationMs' || k === 'refused')
          line[k] = v;
        else if (this.wanted.has(k)) line[k] = v;
      }
    }
    logger.info(line, 'access');
  }
}

/**
 * Told of every request the HTTP server refuses before a handler sees it (for its access line and its count): the
 * status, why, the request when its head was parsed, and the connection.
 */
export type RefusalSink = (
  log: Logger,
  status: number,
  reason: string,
  req: IncomingMessage | undefined,
  socket: Duplex & { remoteAddress?: string },
) => void;

export interface ObserveInfo {
  listener: string;
  direction: Direction;
  /** The listener's series (listener, service, upstream labels). */
  series: HttpSeries;
  clientId?: string;
  streamId?: string;
  metrics: Metrics;
  logger: Logger;
  /** Counts the exchange as work in flight (graceful shutdown waits for it). */
  inflight: { enter(): void; leave(): void };
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

/**
 * Response body bytes written to the client, counted by proxy/http.ts as it relays them, on the exchange observe()
 * made for the response (only an observed response's bytes are ever read: by that exchange, when it ends).
 */
export function countResponse(res: ServerResponse, n: number): void {
  const x = (res as Observable)[EXCHANGE];
  if (x) x.bytesOut = (x.bytesOut ?? 0) + n;
}

/** Request body bytes pushed by the parser, for a chunked request (one without a declared length). */
interface ChunkCount {
  n: number;
}

function countChunks(req: IncomingMessage): ChunkCount | undefined {
  if (req.headers['content-length'] !== undefined || req.headers['transfer-encoding'] === undefined)
    return undefined;
  const count = { n: 0 };
  const push = req.push.bind(req);
  req.push = (chunk: unknown, encoding?: BufferEncoding) => {
    if (chunk && typeof (chunk as Buffer).length === 'number') count.n += (chunk as Buffer).length;
    return push(chunk, encoding);
  };
  return count;
}

/** Request body bytes: the declared length, or (chunked) what the parser pushed, or 0. */
function requestBytes(req: IncomingMessage, chunks: ChunkCount | undefined): number {
  if (chunks) return chunks.n;
  const declared = req.headers['content-length'];
  if (declared === undefined) return 0;
  const n = Number(declared);
  return Number.isFinite(n) ? n : 0;
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

/** The exchange a response belongs to (set by observe(), read by the response's close listener). */
const EXCHANGE = Symbol('geminio.exchange');
type Observable = ServerResponse & { [EXCHANGE]?: Exchange };

/** One exchange being observed: what its end needs, in one object (no closures per request). */
class Exchange implements Observed {
  private decision: string | undefined;
  private closed = false;
  /** Response body bytes relayed (countResponse); undefined: none counted, the content-length tells. */
  bytesOut: number | undefined = undefined;

  constructor(
    private readonly req: IncomingMessage,
    private readonly res: ServerResponse,
    private readonly info: ObserveInfo,
    private readonly started: number,
    readonly requestId: string,
    private readonly chunks: ChunkCount | undefined,
    readonly span: SpanHandle | undefined,
    private readonly client: SpanHandle | undefined,
  ) {}

  decided(allow: boolean): void {
    this.decision = allow ? 'allow' : 'deny';
  }

  /** The response closed: metrics, spans and one access-log line. */
  end(): void {
    if (this.closed) return;
    this.closed = true;
    const { req, res, info, span, client, decision } = this;
    const { series } = info;
    info.inflight.leave();
    series.inFlight.dec();
    const seconds = (performance.now() - this.started) / 1e3;
    const method = methodLabel(req.method);
    const status = res.headersSent ? res.statusCode : 499; // 499: the client went away before an answer
    const bytesIn = requestBytes(req, this.chunks);
    const bytesOut = this.bytesOut ?? (Number(res.getHeader('content-length')) || 0);
    series.exchange(method, status, seconds, bytesIn, bytesOut);
    info.metrics.protocolRequest(info.listener, 'http/1.1');
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
      protocol: 'http/1.1',
      service: series.service,
      upstream: series.upstream,
      clientId: info.clientId,
      streamId: info.streamId,
      requestId: this.requestId,
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
  }
}

/** The one close listener of every observed response (`this` is the response). */
function exchangeClosed(this: Observable): void {
  this[EXCHANGE]?.end();
}

/**
 * Counts the exchange in flight, and when it ends: metrics, spans and one access-log line. Keeps the request's
 * x-request-id (or sets a new one, which the app then gets), and when tracing is on starts the server span and a
 * client span whose context replaces the request's traceparent/tracestate (so the far side is its child).
 */
export function observe(req: IncomingMessage, res: ServerResponse, info: ObserveInfo): Observed {
  const started = performance.now();
  info.inflight.enter();
  const { series } = info;
  series.inFlight.inc();
  const rid = requestId(req);
  if (!res.headersSent) res.setHeader(REQUEST_ID_HEADER, rid);
  const chunks = countChunks(req);
  let span: SpanHandle | undefined;
  let client: SpanHandle | undefined;
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
  const exchange = new Exchange(req, res, info, started, rid, chunks, span, client);
  (res as Observable)[EXCHANGE] = exchange;
  res.on('close', exchangeClosed);
  return exchange;
}
