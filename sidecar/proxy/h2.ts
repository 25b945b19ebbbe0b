/**
 * HTTP/2 (and so gRPC) over geminio streams: one geminio stream per HTTP/2 request. On the stream each direction is
 * a sequence of frames `[type u8][length u32 BE][payload]`: one HEAD (JSON: the request's method, path,
 * authority, headers; or the answer's status, headers and whether it is trailers-only), DATA frames (body bytes,
 * at most `MAX_DATA` each, never the whole body), then TRAILERS (JSON headers) or END. RESET (JSON `{code}`) aborts
 * the exchange: a client that cancels (RST_STREAM) resets the call at the app. Backpressure holds end to end:
 * a full geminio stream pauses the HTTP/2 stream it reads from (HTTP/2 flow control then holds the peer), and a
 * full HTTP/2 stream pauses the geminio stream (its window then holds the far sidecar).
 *
 * `H2Outbound` serves the HTTP/2 requests of an outbound listener; `H2Inbound` takes the streams the peer opened
 * with proto "h2" and sends each request to an `h2c://` or `h2://` (TLS, ALPN h2) target (one HTTP/2 session per
 * target), or to an `http://` target for plain request/response (gRPC to an HTTP/1.1 target is answered UNAVAILABLE).
 */
import http2, { type IncomingHttpHeaders, type ServerHttp2Stream } from 'node:http2';
import type { Dispatcher } from 'undici';
import type { End, Stream } from '../../sdk/index.js';
import type { Http2Config, ServiceConfig } from '../config/schema.js';
import { clientTls, readTlsMaterial, targetTlsConfig } from '../net/tls.js';
import type { Logger } from '../observe/logger.js';
import type { Direction, Metrics } from '../observe/metrics.js';
import { methodLabel } from '../observe/metrics.js';
import { headerCarrier, type SpanHandle, type Tracing } from '../observe/tracing.js';
import type { HookRunner } from '../policy/hooks.js';
import type { AnswerHandler, ExchangePool } from './exchange.js';
import { classify } from './http-util.js';
import type { Inflight } from './inflight.js';

export enum FrameType {
  Head = 1,
  Data = 2,
  Trailers = 3,
  End = 4,
  Reset = 5,
  /** The exchange proto's probe (proxy/exchange.ts): sent by the opener on its first stream, echoed by the inbound. */
  Hello = 6,
}

/** Body bytes per DATA frame at most (a larger chunk is split). */
export const MAX_DATA = 64 * 1024;

/** gRPC status codes used here. */
export const GrpcStatus = {
  ok: 0,
  cancelled: 1,
  deadlineExceeded: 4,
  permissionDenied: 7,
  resourceExhausted: 8,
  unavailable: 14,
} as const;

/**
 * The gRPC codes that mark a server span as failed (OpenTelemetry's gRPC conventions): UNKNOWN, DEADLINE_EXCEEDED,
 * UNIMPLEMENTED, INTERNAL, UNAVAILABLE, DATA_LOSS. The others are the caller's business (a NOT_FOUND is an answer).
 */
const GRPC_SERVER_ERRORS = new Set([2, 4, 12, 13, 14, 15]);

export interface RequestHead {
  method: string;
  path: string;
  authority?: string;
  scheme?: string;
  headers: Record<string, string | string[]>;
}

export interface ResponseHead {
  status: number;
  headers: Record<string, string | string[]>;
  /** Trailers-only: the head is the whole answer (gRPC errors without a body). */
  endStream?: boolean;
  /** On an exchange stream: the stream ends after this exchange (it is not reused). */
  last?: boolean;
}

export function encodeFrame(type: FrameType, payload: Buffer | string = EMPTY): Buffer {
  // A string (a JSON head) is encoded straight into the frame: one allocation, one copy.
  const len = typeof payload === 'string' ? Buffer.byteLength(payload, 'utf8') : payload.length;
  const out = Buffer.allocUnsafe(5 + len);
  out[0] = type;
  out.writeUInt32BE(len, 1);
  if (typeof payload === 'string') out.write(payload, 5, 'utf8');
  else payload.copy(out, 5);
  return out;
}

const EMPTY = Buffer.alloc(0);

export class H2FrameError extends Error {
  override name = 'H2FrameError';
}

export interface FrameSink {
  /** false: pause the source until `resume` is called. */
  data(chunk: Buffer): boolean;
  head(value: unknown): void;
  trailers(value: Record<string, string | string[]>): void;
  end(): void;
  reset(code: number): void;
  /** A HELLO frame (persistent readers only). */
  hello?(): void;
}

/**
 * Reads frames from a geminio stream into a sink. DATA payloads are delivered as they arrive (a frame is never
 * waited for whole); a head or trailers frame longer than `maxHeadBytes` is an H2FrameError. A persistent reader
 * (the exchange proto, proxy/exchange.ts) carries exchange after exchange: END and TRAILERS end one exchange, not
 * the stream, and HELLO is known; its owner checks which frame may come when.
 */
export class FrameReader {
  /** Bytes read and not parsed yet: buf from pos on (an offset, so that parsing a frame makes no Buffer view). */
  private buf: Buffer = EMPTY;
  private pos = 0;
  /** Bytes of the current DATA frame still to come (0: at a frame boundary). */
  private dataLeft = 0;
  private finished = false;
  private tail: Buffer = Buffer.alloc(0);
  private wasReset = false;

  constructor(
    private readonly src: Stream,
    private readonly sink: FrameSink,
    private readonly maxHeadBytes: number,
    private readonly onError: (err: Error) => void,
    private readonly persistent = false,
  ) {
    src.on('data', (chunk: Buffer) => this.push(chunk));
  }

  get done(): boolean {
    return this.finished;
  }

  resume = (): void => {
    this.src.resume();
  };

  private push(chunk: Buffer): void {
    if (this.finished) {
      // After the peer's end only a RESET may come (a call cancelled while its answer still streams).
      this.tail = this.tail.length === 0 ? chunk : Buffer.concat([this.tail, chunk]);
      if (this.tail.length >= 5 && this.tail[0] === FrameType.Reset && !this.wasReset) {
        this.wasReset = true;
        this.sink.reset(http2.constants.NGHTTP2_CANCEL);
      }
      if (this.tail.length > 64) this.tail = this.tail.subarray(0, 64);
      return;
    }
    this.buf = this.pos >= this.buf.length ? chunk : Buffer.concat([this.buf.subarray(this.pos), chunk]);
    this.pos = 0;
    try {
      this.drain();
    } catch (err) {
      this.finished = true;
      this.onError(err as Error);
    }
  }

  /** Bytes already read past the end are looked at as a possible RESET. */
  private afterEnd(): void {
    const rest = this.buf.subarray(this.pos);
    this.buf = EMPTY;
    this.pos = 0;
    if (rest.length > 0) this.push(rest);
  }

  private drain(): void {
    while (this.pos < this.buf.length && !this.finished) {
      const buf = this.buf;
      const at = this.pos;
      const avail = buf.length - at;
      if (this.dataLeft > 0) {
        const n = Math.min(this.dataLeft, avail);
        this.pos = at + n;
        this.dataLeft -= n;
        if (!this.sink.data(buf.subarray(at, at + n))) this.src.pause();
        continue;
      }
      if (avail < 5) return;
      const type = buf[at] as FrameType;
      const len = buf.readUInt32BE(at + 1);
      if (type === FrameType.Data) {
        if (len > MAX_DATA) throw new H2FrameError(`DATA frame of ${len} bytes (at most ${MAX_DATA})`);
        this.pos = at + 5;
        this.dataLeft = len;
        continue;
      }
      if (len > this.maxHeadBytes) throw new H2FrameError(`header frame of ${len} bytes`);
      if (avail < 5 + len) return;
      const start = at + 5;
      const end = start + len;
      this.pos = end;
      switch (type) {
        case FrameType.Head:
          this.sink.head(JSON.parse(buf.toString('utf8', start, end)));
          break;
        case FrameType.Trailers:
          this.finished = !this.persistent;
          this.sink.trailers(
            JSON.parse(buf.toString('utf8', start, end)) as Record<string, string | string[]>,
          );
          if (this.persistent) break;
          return this.afterEnd();
        case FrameType.End:
          this.finished = !this.persistent;
          this.sink.end();
          if (this.persistent) break;
          return this.afterEnd();
        case FrameType.Hello:
          if (!this.persistent || !this.sink.hello) throw new H2FrameError(`unknown frame type ${type}`);
          this.sink.hello();
          break;
        case FrameType.Reset: {
          this.finished = true;
          const v = len > 0 ? (JSON.parse(buf.toString('utf8', start, end)) as { code?: number }) : {};
          this.sink.reset(typeof v.code === 'number' ? v.code : http2.constants.NGHTTP2_CANCEL);
          return;
        }
        default:
          throw new H2FrameError(`unknown frame type ${type}`);
      }
    }
    // All parsed: the chunk is not held (nor is a large one kept alive by a small view of it).
    if (this.pos >= this.buf.length) {
      this.buf = EMPTY;
      this.pos = 0;
    }
  }
}

/** Body bytes as DATA frames of at most MAX_DATA each, in one buffer. */
export function dataFrames(chunk: Buffer): Buffer {
  if (chunk.length <= MAX_DATA) return encodeFrame(FrameType.Data, chunk);
  const parts: Buffer[] = [];
  for (let i = 0; i < chunk.length; i += MAX_DATA)
    parts.push(encodeFrame(FrameType.Data, chunk.subarray(i, i + MAX_DATA)));
  return Buffer.concat(parts);
}

/** Writes body chunks as DATA frames; false when the stream is full (wait for its 'drain'). */
export function writeData(dst: Stream, chunk: Buffer): boolean {
  return dst.write(dataFrames(chunk));
}

/** HTTP/2 headers without pseudo-headers and connection-specific ones (RFC 9113 §8.2.2). */
export function plainHeaders(h: IncomingHttpHeaders): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const [k, v] of Object.entries(h)) {
    if (v === undefined || k.startsWith(':') || CONNECTION_SPECIFIC.has(k)) continue;
    if (k === 'te' && String(v).toLowerCase() !== 'trailers') continue;
    out[k] = v;
  }
  return out;
}

/** Connection-specific headers (RFC 9113 §8.2.2): never carried on an HTTP/2 message. */
export const CONNECTION_SPECIFIC: ReadonlySet<string> = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'upgrade',
  'host',
  'http2-settings',
]);

export function isGrpc(headers: IncomingHttpHeaders | Record<string, unknown>): boolean {
  const ct = headers['content-type'];
  return typeof ct === 'string' && ct.startsWith('application/grpc');
}

/** grpc-message's percent-encoding (the gRPC HTTP/2 spec): bytes outside 0x20..0x7E, and '%', are escaped. */
export function grpcMessage(text: string): string {
  let out = '';
  for (const b of Buffer.from(text, 'utf8')) {
    out +=
      b < 0x20 || b > 0x7e || b === 0x25
        ? `%${b.toString(16).toUpperCase().padStart(2, '0')}`
        : String.fromCharCode(b);
  }
  return out;
}

/** A trailers-only gRPC answer (status 200, the grpc-status in the head, END_STREAM). */
export function grpcErrorHead(code: number, message: string): ResponseHead {
  return {
    status: 200,
    headers: {
      'content-type': 'application/grpc',
      'grpc-status': String(code),
      'grpc-message': grpcMessage(message),
    },
    endStream: true,
  };
}

/** The gRPC status of a denial: 503 (authorization unavailable) is UNAVAILABLE, the rest PERMISSION_DENIED. */
export function deniedGrpcStatus(status: number | undefined): number {
  if (status === 503) return GrpcStatus.unavailable;
  if (status === 429) return GrpcStatus.resourceExhausted;
  return GrpcStatus.permissionDenied;
}

/** The h2 settings and limits of a server or session from the config. */
export function h2Settings(c: Http2Config): http2.Settings {
  return {
    maxConcurrentStreams: c.maxConcurrentStreams,
    maxHeaderListSize: c.maxHeaderListBytes,
    initialWindowSize: c.initialWindowBytes,
  };
}

export function h2SessionOptions(c: Http2Config): http2.ServerOptions {
  return {
    settings: h2Settings(c),
    maxHeaderListPairs: c.maxHeaders,
    maxSessionMemory: c.maxSessionMemoryMiB,
    maxSettings: 32,
    peerMaxConcurrentStreams: c.maxConcurrentStreams,
    maxOutstandingPings: 10,
    maxSessionRejectedStreams: 100,
    maxSessionInvalidFrames: 1000,
  };
}

export interface H2Deps {
  metrics: Metrics;
  logger: Logger;
  hooks: HookRunner;
  inflight: Inflight;
  http2: Http2Config;
  tracing: Tracing;
}

/** The bounded grpc-status label: "0".."16", or "other". */
export function grpcStatusLabel(v: unknown): string {
  const n = Number(Array.isArray(v) ? v[0] : v);
  return Number.isInteger(n) && n >= 0 && n <= 16 ? String(n) : 'other';
}

/** Per-request bookkeeping: metrics by protocol and grpc-status, and one access-log line. */
export class H2Observation {
  private readonly started = performance.now();
  status = 0;
  grpcStatus: string | undefined;
  private readonly done: () => void;
  private finished = false;

  /** The server span (the request as received) and the client span (as forwarded), when tracing is on. */
  private readonly span: SpanHandle | undefined;
  private readonly client: SpanHandle | undefined;

  constructor(
    private readonly deps: H2Deps,
    private readonly info: {
      listener: string;
      /** The HTTP series labels: the service and the upstream (outbound) or target (inbound). */
      service: string;
      upstream: string;
      direction: Direction;
      protocol: string;
      clientId?: string;
      streamId?: string;
      method: string;
      path: string;
      grpc: boolean;
    },
    /** The request's headers as received: the caller's traceparent/tracestate is the server span's parent. */
    incoming?: Record<string, string | string[] | undefined>,
  ) {
    this.done = deps.inflight.begin();
    if (!deps.tracing.enabled) return;
    const method = methodLabel(info.method);
    // A gRPC span is named by its method (the path, /package.Service/Method), as gRPC instrumentations do.
    const name = info.grpc ? info.path.split('?')[0]!.slice(1) : method;
    this.span = deps.tracing.start(
      `${info.listener} ${name}`,
      'server',
      incoming ? headerCarrier(incoming) : undefined,
      {
        'http.request.method': info.method,
        'url.path': info.path.split('?')[0],
        'network.protocol.name': info.protocol,
        'rpc.system': info.grpc ? 'grpc' : undefined,
        'geminio.listener': info.listener,
        'geminio.direction': info.direction,
        'geminio.service': info.service,
        'geminio.upstream': info.upstream,
        'geminio.client_id': info.clientId,
        'geminio.stream_id': info.streamId,
      },
    );
    if (this.span) {
      this.client = deps.tracing.start(`${info.service} ${name}`, 'client', this.span, {
        'geminio.service': info.service,
        'geminio.upstream': info.upstream,
      });
    }
  }

  /** Puts the forwarded request's trace context (the client span's) into the headers that go on. */
  inject(headers: Record<string, string | string[] | undefined>): void {
    const s = this.client ?? this.span;
    if (!s) return;
    const carrier = s.carrier();
    if (!carrier.traceparent) return;
    headers.traceparent = carrier.traceparent;
    if (carrier.tracestate) headers.tracestate = carrier.tracestate;
    else delete headers.tracestate;
  }

  /** The authorization decision, on the spans (the HTTP/1.1 path records it the same way). */
  decided(allow: boolean): void {
    const decision = allow ? 'allow' : 'deny';
    this.span?.set({ 'geminio.authz.decision': decision });
    this.client?.set({ 'geminio.authz.decision': decision });
  }

  noteHead(h: { status: number; headers: Record<string, unknown> }): void {
    this.status = h.status;
    if (h.headers['grpc-status'] !== undefined) this.grpcStatus = grpcStatusLabel(h.headers['grpc-status']);
  }

  noteTrailers(t: Record<string, unknown>): void {
    if (t['grpc-status'] !== undefined) this.grpcStatus = grpcStatusLabel(t['grpc-status']);
  }

  finish(outcome: 'completed' | 'reset'): void {
    if (this.finished) return;
    this.finished = true;
    this.done();
    const seconds = (performance.now() - this.started) / 1e3;
    const { metrics, logger } = this.deps;
    const i = this.info;
    const status = this.status || 499;
    if (i.grpc && this.grpcStatus === undefined && outcome === 'reset')
      this.grpcStatus = String(GrpcStatus.cancelled);
    // Body sizes are not counted on HTTP/2 (its frames are relayed as they come): 0 in the size histograms.
    metrics
      .httpSeries(i.listener, i.service, i.upstream)
      .exchange(methodLabel(i.method), status, seconds, 0, 0);
    metrics.protocolRequest(i.listener, i.protocol);
    if (i.grpc) metrics.grpcRequest(i.listener, this.grpcStatus ?? 'other');
    if (this.span) {
      const grpcCode = this.grpcStatus === undefined ? undefined : Number(this.grpcStatus);
      const error =
        status >= 500 || outcome === 'reset'
          ? `status ${status}${outcome === 'reset' ? ' (reset)' : ''}`
          : grpcCode !== undefined && GRPC_SERVER_ERRORS.has(grpcCode)
            ? `grpc-status ${grpcCode}`
            : undefined;
      const attributes = { 'http.response.status_code': status, 'rpc.grpc.status_code': grpcCode };
      this.client?.set(attributes);
      this.client?.end(error);
      this.span.set(attributes);
      this.span.end(error);
    }
    if (!logger.isLevelEnabled('info')) return;
    logger.info(
      {
        listener: i.listener,
        direction: i.direction,
        protocol: i.protocol,
        clientId: i.clientId,
        streamId: i.streamId,
        method: i.method,
        path: i.path,
        status,
        grpcStatus: this.grpcStatus,
        traceId: this.span?.traceId,
        spanId: this.span?.spanId,
        completed: outcome === 'completed',
        durationMs: Math.round(seconds * 1e6) / 1e3,
      },
      'access',
    );
  }
}

/** Answers an HTTP/2 request itself: a gRPC trailers-only error, or a JSON error for plain HTTP. */
export function answerH2(
  s: ServerHttp2Stream,
  grpc: boolean,
  httpStatus: number,
  grpcCode: number,
  code: string,
  message: string,
  obs?: H2Observation,
): void {
  if (s.destroyed || s.headersSent) {
    s.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
    obs?.finish('reset');
    return;
  }
  if (grpc) {
    const h = grpcErrorHead(grpcCode, message);
    obs?.noteHead(h);
    s.respond({ ':status': 200, ...h.headers }, { endStream: true });
  } else {
    const body = JSON.stringify({ error: message, code });
    obs?.noteHead({ status: httpStatus, headers: {} });
    s.respond({ ':status': httpStatus, 'content-type': 'application/json' });
    s.end(body);
  }
  s.once('close', () => obs?.finish('completed'));
}

export interface OutboundH2Context {
  listener: string;
  service: string;
  direction: Direction;
  protocol: 'h2c' | 'h2';
  /** An endpoint for this request (balanced per request); undefined when none is connected. */
  lease: () => H2Lease | undefined;
  /** The exchange streams to the lease's endpoint. */
  pool: (l: H2Lease) => ExchangePool;
  /** Opens an "h2" stream for one request, for an inbound that does not know the exchange proto. */
  open: (end: End) => Promise<Stream>;
  upstreamName: string;
}

/** The part of an upstream lease (outbound/upstreams.ts) a request uses. */
export interface H2Lease {
  readonly end: End;
  done(outcome: { ok: true; ms: number } | { ok: false } | { neutral: true }): void;
}

/** Serves one HTTP/2 request of an outbound listener: decided, then carried on its own geminio stream. */
export async function serveOutboundH2(
  s: ServerHttp2Stream,
  headers: IncomingHttpHeaders,
  ctx: OutboundH2Context,
  deps: H2Deps,
): Promise<void> {
  s.on('error', () => {});
  const method = String(headers[':method'] ?? 'GET');
  const path = String(headers[':path'] ?? '/');
  const grpc = isGrpc(headers);
  // The endpoint is chosen first, so the hooks, the metrics and the access line see the ClientID of the
  // connection the request goes on (each endpoint of an upstream has its own).
  const held = ctx.lease();
  const clientId = held ? String(held.end.clientId) : undefined;
  const obs = new H2Observation(
    deps,
    {
      listener: ctx.listener,
      service: ctx.service,
      upstream: ctx.upstreamName,
      direction: ctx.direction,
      protocol: ctx.protocol,
      clientId,
      method,
      path,
      grpc,
    },
    headers,
  );
  const plain = plainHeaders(headers);
  const facts = {
    clientId,
    method,
    path,
    headers: { ...plain, ':authority': headers[':authority'] },
    service: ctx.service,
    direction: ctx.direction,
    listener: ctx.listener,
  };
  // As on the HTTP/1.1 path: decided in this turn when nothing can make the decision wait.
  const decision = deps.hooks.decideNow('request', facts) ?? (await deps.hooks.decide('request', facts));
  obs.decided(decision.allow);
  if (!decision.allow) {
    held?.done({ neutral: true });
    const status = decision.status ?? 403;
    return answerH2(s, grpc, status, deniedGrpcStatus(status), 'FORBIDDEN', decision.reason, obs);
  }
  obs.inject(plain);
  if (!held) {
    return answerH2(
      s,
      grpc,
      503,
      GrpcStatus.unavailable,
      'UPSTREAM_UNAVAILABLE',
      `upstream ${ctx.upstreamName} is not connected`,
      obs,
    );
  }
  if (s.destroyed) {
    held.done({ neutral: true });
    return obs.finish('reset');
  }
  const t0 = performance.now();
  let reported = false;
  const report = (ok: boolean | 'neutral') => {
    if (reported) return;
    reported = true;
    held.done(
      ok === 'neutral' ? { neutral: true } : ok ? { ok: true, ms: performance.now() - t0 } : { ok: false },
    );
  };
  const unavailable = (err: Error) => {
    report(false);
    answerH2(s, grpc, 503, GrpcStatus.unavailable, 'UPSTREAM_UNAVAILABLE', err.message, obs);
  };
  const pool = ctx.pool(held);
  // Known after the endpoint's first request: no promise and no turn of the microtask queue per call.
  let exchange = pool.negotiated;
  if (exchange === undefined) {
    try {
      exchange = await pool.negotiate();
    } catch (err) {
      return unavailable(err as Error);
    }
  }
  if (s.destroyed || s.closed) {
    // The client reset the request while it was decided (a rapid-reset flood does that): nothing is sent.
    report('neutral');
    return obs.finish('reset');
  }
  if (exchange) {
    const handler = new H2Answer(s, grpc, obs, report);
    s.once('close', () => handler.closed());
    pool.dispatch(
      {
        method: method as Dispatcher.HttpMethod,
        path,
        headers: plain,
        body: s,
        authority: headers[':authority'],
        scheme: headers[':scheme'],
        h2: true,
      } as Dispatcher.DispatchOptions,
      handler,
    );
    return;
  }
  let stream: Stream;
  try {
    stream = await ctx.open(held.end);
  } catch (err) {
    return unavailable(err as Error);
  }
  stream.once('close', () => report(true));
  carry(
    s,
    stream,
    { method, path, authority: headers[':authority'], scheme: headers[':scheme'], plain },
    grpc,
    obs,
    deps,
  );
}

/**
 * The answer of a request carried on an exchange stream, to the client's HTTP/2 stream: head, data (paused while
 * the client's stream is full), trailers. The client's reset or disconnect aborts the exchange (a RESET to the far
 * side, which resets the call at the app).
 */
class H2Answer implements AnswerHandler {
  private controller: Dispatcher.DispatchController | undefined;
  private done = false;
  private headEnded = false;
  private trailers: Record<string, string | string[]> = {};

  constructor(
    private readonly s: ServerHttp2Stream,
    private readonly grpc: boolean,
    private readonly obs: H2Observation,
    private readonly report: (ok: boolean | 'neutral') => void,
  ) {}

  onRequestStart(c: Dispatcher.DispatchController): void {
    this.controller = c;
    if (this.s.destroyed || this.s.closed) c.abort(new Error('client went away'));
  }

  onResponseStart(
    c: Dispatcher.DispatchController,
    status: number,
    headers: Record<string, string | string[]>,
    _message?: string,
    endStream?: boolean,
  ): void {
    const s = this.s;
    if (s.destroyed) return c.abort(new Error('client went away'));
    this.obs.noteHead({ status, headers });
    if (endStream) {
      this.headEnded = true;
      s.respond({ ':status': status, ...headers }, { endStream: true });
      return;
    }
    s.respond({ ':status': status, ...headers }, { waitForTrailers: true });
    s.once('wantTrailers', () => {
      if (!s.destroyed) s.sendTrailers(this.trailers);
    });
  }

  onResponseData(c: Dispatcher.DispatchController, chunk: Buffer): void {
    const s = this.s;
    if (s.destroyed) return c.abort(new Error('client went away'));
    if (!s.write(chunk)) {
      c.pause();
      s.once('drain', () => c.resume());
    }
  }

  onResponseEnd(_c: Dispatcher.DispatchController, trailers: Record<string, string | string[]>): void {
    this.done = true;
    this.report(true);
    this.trailers = trailers;
    this.obs.noteTrailers(trailers);
    if (!this.s.destroyed && !this.headEnded) this.s.end();
  }

  onResponseError(_c: Dispatcher.DispatchController, err: Error): void {
    if (this.done) return;
    this.done = true;
    const s = this.s;
    if (s.destroyed || s.closed) {
      this.report('neutral');
      return this.obs.finish('reset');
    }
    this.report(false);
    const code = (err as { resetCode?: number }).resetCode;
    if (s.headersSent) return s.close(code ?? http2.constants.NGHTTP2_INTERNAL_ERROR);
    const failure = classify(err);
    const grpcCode = failure.status === 504 ? GrpcStatus.deadlineExceeded : GrpcStatus.unavailable;
    answerH2(s, this.grpc, failure.status, grpcCode, failure.code, failure.message, this.obs);
  }

  /** The client's stream closed: a request not answered yet is aborted at the far side. */
  closed(): void {
    const s = this.s;
    if (!this.done) {
      this.controller?.abort(new Error('client went away'));
      this.obs.finish('reset');
      return;
    }
    this.obs.finish(s.rstCode === http2.constants.NGHTTP2_NO_ERROR ? 'completed' : 'reset');
  }
}

/** Relays one decided request between the client's HTTP/2 stream and a geminio stream ("h2": one per request). */
function carry(
  s: ServerHttp2Stream,
  stream: Stream,
  r: {
    method: string;
    path: string;
    authority?: string;
    scheme?: string;
    plain: Record<string, string | string[]>;
  },
  grpc: boolean,
  obs: H2Observation,
  deps: H2Deps,
): void {
  stream.on('error', () => {});
  if (s.destroyed || s.closed) {
    // The client reset the request while it was decided or its stream opened (a rapid-reset flood does that).
    stream.destroy();
    obs.finish('reset');
    return;
  }
  let answered = false; // the answer is complete (or reset)
  const head: RequestHead = {
    method: r.method,
    path: r.path,
    authority: r.authority,
    scheme: r.scheme,
    headers: r.plain,
  };
  stream.write(encodeFrame(FrameType.Head, JSON.stringify(head)));
  // Request body: HTTP/2 stream -> DATA frames, paused while the geminio stream is full.
  s.on('data', (chunk: Buffer) => {
    if (!writeData(stream, chunk)) {
      s.pause();
      stream.once('drain', () => s.resume());
    }
  });
  s.once('end', () => {
    if (!answered && !stream.destroyed) stream.write(encodeFrame(FrameType.End));
  });
  let pendingTrailers: Record<string, string | string[]> | undefined;
  let headEnded = false; // a trailers-only answer: the head ended the HTTP/2 stream
  const finishAnswer = () => {
    answered = true;
    stream.end();
  };
  const reader = new FrameReader(
    stream,
    {
      head: (v) => {
        const h = v as ResponseHead;
        if (s.destroyed) return;
        obs.noteHead(h);
        if (h.endStream) {
          headEnded = true;
          s.respond({ ':status': h.status, ...h.headers }, { endStream: true });
          return;
        }
        s.respond({ ':status': h.status, ...h.headers }, { waitForTrailers: true });
        s.once('wantTrailers', () => {
          if (!s.destroyed) s.sendTrailers(pendingTrailers ?? {});
        });
      },
      data: (chunk) => {
        if (s.destroyed) return true;
        if (s.write(chunk)) return true;
        s.once('drain', reader.resume);
        return false;
      },
      trailers: (t) => {
        pendingTrailers = t;
        obs.noteTrailers(t);
        finishAnswer();
        if (!s.destroyed && !headEnded) {
          if (s.headersSent) s.end();
          else s.respond({ ':status': 200, ...t }, { endStream: true });
        }
      },
      end: () => {
        finishAnswer();
        if (!s.destroyed && !headEnded) {
          if (s.headersSent) s.end();
          else s.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
        }
      },
      reset: (code) => {
        answered = true;
        stream.end();
        obs.finish('reset');
        s.close(code);
      },
    },
    deps.http2.maxHeaderListBytes * 2,
    (err) => {
      deps.logger.warn({ err: err.message }, 'bad h2 frame from the far side; resetting the request');
      answered = true;
      stream.destroy();
      if (!s.headersSent) answerH2(s, grpc, 502, GrpcStatus.unavailable, 'BAD_GATEWAY', err.message, obs);
      else s.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
    },
  );
  // The far side went away before a whole answer: the client gets an error answer, or a reset once it started.
  const broken = () => {
    if (answered || reader.done) return;
    answered = true;
    if (!s.destroyed && !s.headersSent)
      answerH2(
        s,
        grpc,
        502,
        GrpcStatus.unavailable,
        'UPSTREAM_UNAVAILABLE',
        'the far side closed the stream',
        obs,
      );
    else if (!s.destroyed) s.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
  };
  stream.once('close', broken);
  stream.once('end', broken);
  // The client reset or went away (a cancelled call, a deadline it enforces): the far side resets the call.
  s.once('close', () => {
    if (!answered) {
      answered = true;
      if (!stream.destroyed) {
        stream.write(encodeFrame(FrameType.Reset, JSON.stringify({ code: http2.constants.NGHTTP2_CANCEL })));
        stream.end();
      }
      obs.finish('reset');
      return;
    }
    obs.finish(s.rstCode === http2.constants.NGHTTP2_NO_ERROR ? 'completed' : 'reset');
  });
}

/**
 * The TLS options of a session to an h2:// target: its CA, client certificate and server name, read when the session
 * is made (so a new session sees rotated files). ALPN is h2 (http2.connect offers it and requires it).
 */
function targetTls(service: string, config: ServiceConfig): http2.SecureClientSessionOptions {
  const t = targetTlsConfig(config.tls);
  const { material, problems } = readTlsMaterial(t, `services.${service}.tls`);
  if (problems.length > 0)
    throw new Error(`TLS files of service "${service}": ${problems.map((p) => p.path).join(', ')}`);
  return clientTls(t, material) ?? {};
}

/**
 * The inbound side's HTTP/2 sessions to its h2c:// and h2:// targets, one per target and TLS settings (the
 * requests that use them arrive on "exchange" and "h2" streams: ../inbound/exchange-service.ts).
 */
export class H2Inbound {
  private readonly sessions = new Map<string, http2.ClientHttp2Session>();

  constructor(private readonly deps: H2Deps) {}

  /** The HTTP/2 session to an h2c:// or h2:// target (one per target and TLS settings, made on first use). */
  session(target: string, service: string, config: ServiceConfig): http2.ClientHttp2Session {
    const secure = target.startsWith('h2://');
    const key = sessionKey(target, config);
    let s = this.sessions.get(key);
    if (s && !s.closed && !s.destroyed) return s;
    s = http2.connect(target.replace(/^h2c:/, 'http:').replace(/^h2:/, 'https:'), {
      settings: h2Settings(this.deps.http2),
      maxHeaderListPairs: this.deps.http2.maxHeaders,
      maxSessionMemory: this.deps.http2.maxSessionMemoryMiB,
      peerMaxConcurrentStreams: this.deps.http2.maxConcurrentStreams,
      ...(secure ? targetTls(service, config) : {}),
    });
    const mine = s;
    s.on('error', (err: Error) =>
      this.deps.logger.debug({ err: err.message, target }, 'h2 target session error'),
    );
    s.once('close', () => {
      if (this.sessions.get(key) === mine) this.sessions.delete(key);
    });
    s.unref();
    this.sessions.set(key, s);
    return s;
  }

  /**
   * After a reload: a session no service uses any more (its target removed, or an h2:// service's TLS settings
   * changed) is closed. Its streams in flight finish first (GOAWAY); the next request opens a session as now configured.
   */
  retain(services: Record<string, ServiceConfig>): void {
    const used = new Set<string>();
    for (const svc of Object.values(services))
      if (isH2Target(svc.target)) used.add(sessionKey(svc.target, svc));
    for (const [key, s] of this.sessions) {
      if (used.has(key)) continue;
      this.sessions.delete(key);
      s.close();
    }
  }

  /** Sessions open now (the tests read it). */
  get size(): number {
    return this.sessions.size;
  }

  close(): void {
    for (const s of this.sessions.values()) s.close();
  }

  destroy(): void {
    for (const s of this.sessions.values()) s.destroy();
  }
}

/** A service target the sidecar reaches over HTTP/2 (`h2c://` in clear text, `h2://` over TLS). */
export function isH2Target(target: string): boolean {
  return target.startsWith('h2c://') || target.startsWith('h2://');
}

/** An h2:// session is the target's with that service's TLS settings (two services may trust differently). */
function sessionKey(target: string, config: ServiceConfig): string {
  return target.startsWith('h2://') ? `${target} ${JSON.stringify(config.tls)}` : target;
}
