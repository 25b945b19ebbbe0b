/**
 * The acceptor's side of the exchange proto (../proxy/exchange.ts): a stream the peer opened with proto "exchange"
 * is read exchange after exchange, with no HTTP server on it. Each request head is decided by the same per-request
 * hook as on an "http" stream (with ClientID and StreamID), observed (metrics, access line, tracing: observe() for
 * a request that came over HTTP/1.1 to an http:// target, as the per-stream HTTP server did; the HTTP/2
 * observation otherwise, as on an "h2" stream), then sent to the service's target with undici's `dispatch` (an
 * http:// target) or on the HTTP/2 session of an h2c:// or h2:// target, and the answer is framed back on the same stream.
 */
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import http2 from 'node:http2';
import { Readable } from 'node:stream';
import type { Dispatcher } from 'undici';
import type { Stream } from '../../sdk/index.js';
import type { ServiceConfig } from '../config/schema.js';
import { countResponse, type Observed, type ObserveInfo, observe } from '../observe/access-log.js';
import type { Logger } from '../observe/logger.js';
import type { Direction } from '../observe/metrics.js';
import type { Decision } from '../policy/decision.js';
import type { HookFacts } from '../policy/hooks.js';
import type { ExchangeRequestHead } from '../proxy/exchange.js';
import {
  CONNECTION_SPECIFIC,
  dataFrames,
  deniedGrpcStatus,
  encodeFrame,
  FrameReader,
  type FrameSink,
  FrameType,
  GrpcStatus,
  grpcErrorHead,
  type H2Deps,
  type H2Inbound,
  H2Observation,
  isGrpc,
  isH2Target,
  plainHeaders,
  type ResponseHead,
} from '../proxy/h2.js';
import {
  classify,
  deniedCode,
  ErrorCode,
  forwardHeaders,
  IDEMPOTENT,
  responseHeaders,
} from '../proxy/http-util.js';

/** Answer bytes gathered before a write: a small answer (head, body, END) is one stream write. */
const COALESCE = 16 * 1024;

export interface ExchangeStreamContext {
  service: string;
  /** Undefined: every request on the stream gets `refusal` (an unknown service, a denied stream). */
  config?: ServiceConfig;
  direction: Direction;
  clientId: string;
  streamId: string;
  /** The pool to an http:// target, and the observe info of the stream (for HTTP/1.1 requests). */
  dispatcher?: Dispatcher;
  info?: ObserveInfo;
  refusal?: { status: number; code: string; message: string };
  /** Told when each exchange begins and ends (a retiring forwarder ends the stream when it is idle). */
  onExchange?: (busy: boolean) => void;
  /**
   * An "h2" stream (an outbound sidecar from before the exchange proto): one HTTP/2 request, then the stream ends.
   */
  single?: boolean;
  /** True once the service's forwarder is retired: its streams end after their exchange. */
  retiring?: () => boolean;
}

/**
 * A request as observe() sees it: the head's method, path and headers, and the answer's state (observe() takes
 * an IncomingMessage and a ServerResponse; this is the part of them it reads).
 */
class Facade {
  readonly socket = null;
  headersSent = false;
  statusCode = 200;
  writableFinished = false;
  readonly set: Record<string, string> = {};
  private answerLength: unknown;
  /** observe()'s 'close' listener (the one event it listens to): no EventEmitter per request. */
  private closeListeners: Array<(this: Facade) => void> | undefined;

  constructor(
    readonly method: string,
    readonly url: string,
    readonly headers: IncomingHttpHeaders,
  ) {}

  on(event: string, fn: (this: Facade) => void): this {
    if (event !== 'close') throw new Error(`a request facade has no '${event}' event`);
    (this.closeListeners ??= []).push(fn);
    return this;
  }

  /** The answer is over (completed or reset): what observe() counts and logs. Once. */
  close(): void {
    const fns = this.closeListeners;
    this.closeListeners = undefined;
    if (fns) for (const fn of fns) fn.call(this);
  }

  push(_chunk: unknown): boolean {
    return true;
  }

  setHeader(name: string, value: string): this {
    this.set[name] = value;
    return this;
  }

  getHeader(name: string): unknown {
    return name === 'content-length' ? this.answerLength : this.set[name];
  }

  answered(status: number, headers: Record<string, unknown>): void {
    this.headersSent = true;
    this.statusCode = status;
    this.answerLength = headers['content-length'];
  }
}

/** One stream's exchanges, in turn. */
class ExchangeConn implements FrameSink {
  readonly reader: FrameReader;
  current: InboundExchange | undefined;
  /** The answer was sent before the request ended: its remaining frames are dropped until its END. */
  draining = false;
  /** A single-request stream had its request. */
  private served = false;
  dead = false;

  constructor(
    readonly stream: Stream,
    readonly svc: ExchangeService,
    readonly ctx: ExchangeStreamContext,
    readonly log: Logger,
  ) {
    stream.on('error', () => {});
    this.reader = new FrameReader(
      stream,
      this,
      svc.deps.http2.maxHeaderListBytes * 2,
      (err) => this.bad(err),
      true,
    );
    const gone = () => this.gone();
    stream.once('end', gone);
    stream.once('close', gone);
  }

  private bad(err: Error): void {
    this.log.warn({ err: err.message }, 'bad frame on an exchange stream; closing it');
    this.close();
  }

  /** The stream is done with (a RESET, a bad frame, the peer gone): the exchange in flight is aborted. */
  close(): void {
    if (this.dead) return;
    this.dead = true;
    this.current?.abort();
    this.current = undefined;
    this.stream.destroy();
  }

  private gone(): void {
    if (this.dead) return;
    this.dead = true;
    this.current?.abort();
    this.current = undefined;
    if (!this.stream.destroyed) this.stream.end();
  }

  hello(): void {
    if (this.current || this.draining) return this.bad(new Error('HELLO during an exchange'));
    this.stream.write(encodeFrame(FrameType.Hello));
  }

  head(v: unknown): void {
    const h = v as Partial<ExchangeRequestHead>;
    if (this.current || this.draining || this.served)
      return this.bad(new Error('a request head during an exchange'));
    if (
      typeof h.method !== 'string' ||
      typeof h.path !== 'string' ||
      typeof h.headers !== 'object' ||
      !h.headers
    )
      return this.bad(new Error('a malformed request head'));
    if (this.ctx.single) {
      this.served = true;
      h.v = 'h2';
    }
    this.current = new InboundExchange(this, h as ExchangeRequestHead);
    this.ctx.onExchange?.(true);
    this.current.start();
  }

  data(chunk: Buffer): boolean {
    if (this.draining) return true;
    if (!this.current) {
      this.bad(new Error('DATA outside an exchange'));
      return true;
    }
    return this.current.bodyData(chunk);
  }

  trailers(): void {
    this.end();
  }

  end(): void {
    if (this.draining) {
      this.draining = false;
      return;
    }
    if (!this.current) return this.bad(new Error('END outside an exchange'));
    this.current.requestEnd();
  }

  reset(): void {
    this.close();
  }

  /** The identity headers of this stream's requests (its End's ClientID, and the name decided), built once. */
  private identity: { name: string | undefined; headers: Record<string, string> } | undefined;
  identityHeaders(name: string | undefined): Record<string, string> {
    if (this.identity && this.identity.name === name) return this.identity.headers;
    const headers: Record<string, string> = { 'x-geminio-client-id': this.ctx.clientId };
    if (name !== undefined) headers['x-geminio-client-name'] = name;
    this.identity = { name, headers };
    return headers;
  }

  /** Whether the stream ends after the exchange in flight (so the opener does not reuse it). */
  closesAfter(): boolean {
    return this.ctx.single === true || this.ctx.refusal !== undefined || this.ctx.retiring?.() === true;
  }

  /** The exchange is over both ways (or its answer is, and the rest of its request is dropped). */
  finished(x: InboundExchange, requestEnded: boolean): void {
    if (this.current !== x) return;
    this.current = undefined;
    this.draining = !requestEnded;
    this.ctx.onExchange?.(false);
    if (this.dead) return;
    // A refused stream answers its request and closes, as an "http" one does: the opener's next request opens a
    // new stream, which is decided again.
    if (this.closesAfter()) this.stream.end();
    else this.stream.resume();
  }
}

/** One exchange on an exchange stream. */
class InboundExchange {
  private readonly grpc: boolean;
  private readonly h2: boolean;
  private requestEnded = false;
  private answerDone = false;
  private aborted = false;
  /** The body going to the target, and what came before it existed. */
  private body: Readable | undefined;
  private app: http2.ClientHttp2Stream | undefined;
  private queued: Buffer[] | undefined = [];
  private controller: Dispatcher.DispatchController | undefined;
  private obs: H2Observation | undefined;
  private facade: Facade | undefined;
  private seen: Observed | undefined;
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private flushQueued = false;
  private answerStarted = false;
  private attempt = 0;

  constructor(
    private readonly conn: ExchangeConn,
    private readonly head: ExchangeRequestHead,
  ) {
    this.h2 = head.v === 'h2';
    this.grpc = this.h2 && isGrpc(head.headers);
  }

  private get stream(): Stream {
    return this.conn.stream;
  }

  start(): void {
    const { ctx, svc } = this.conn;
    const h = this.head;
    const target = ctx.config?.target ?? '';
    const toH2 = isH2Target(target);
    if (!this.h2 && !toH2 && ctx.info) {
      // The head is this exchange's own (parsed from its frame): observe() may add x-request-id to it.
      this.facade = new Facade(h.method, h.path, h.headers);
      this.seen = observe(
        this.facade as unknown as IncomingMessage,
        this.facade as unknown as ServerResponse,
        ctx.info,
      );
    } else {
      this.obs = new H2Observation(
        svc.deps,
        {
          listener: 'inbound',
          service: ctx.service,
          upstream: targetLabel(target),
          direction: ctx.direction,
          protocol: toH2 ? (target.startsWith('h2://') ? 'h2' : 'h2c') : 'http/1.1',
          clientId: ctx.clientId,
          streamId: ctx.streamId,
          method: h.method,
          path: h.path,
          grpc: this.grpc,
        },
        h.headers,
      );
    }
    if (ctx.refusal) {
      const r = ctx.refusal;
      return this.error(r.status, r.status === 404 ? 12 : deniedGrpcStatus(r.status), r.code, r.message);
    }
    const facts: HookFacts = {
      clientId: ctx.clientId,
      streamId: ctx.streamId,
      method: h.method,
      path: h.path,
      headers: this.facade ? this.facade.headers : h.headers,
      service: ctx.service,
      direction: ctx.direction,
    };
    // Decided in this turn when nothing can make the decision wait (no hook, no plugin for requests): the stream
    // is not paused then (a pause and a resume in one turn cost a tick and a read of the stream for nothing).
    const now = svc.deps.hooks.decideNow('request', facts);
    if (now) return this.decided(now);
    this.stream.pause(); // until the request is decided and its target exists
    void svc.deps.hooks.decide('request', facts).then((d) => this.decided(d));
  }

  private decided(decision: Decision): void {
    const { ctx } = this.conn;
    const h = this.head;
    const headers = this.facade ? this.facade.headers : h.headers;
    this.seen?.decided(decision.allow);
    this.obs?.decided(decision.allow);
    if (this.aborted) return;
    if (!decision.allow) {
      const status = decision.status ?? 403;
      return this.error(status, deniedGrpcStatus(status), deniedCode(status), decision.reason);
    }
    // Identity headers come from the sidecar only: the client's own x-geminio-* headers are dropped, and plugin
    // headers cannot replace the sidecar's.
    const identity = this.conn.identityHeaders(decision.name);
    const out = forwardHeaders(
      headers as IncomingHttpHeaders,
      decision.headers ? { ...decision.headers, ...identity } : identity,
      'x-geminio-',
    );
    this.obs?.inject(out);
    const target = ctx.config!.target;
    if (isH2Target(target)) return this.toH2(target, out);
    if (this.grpc || !ctx.dispatcher) {
      const why = `service "${ctx.service}" is an HTTP/1.1 target (${target}); gRPC needs an h2c:// or h2:// target`;
      this.conn.log.warn({ target, path: h.path }, why);
      return this.error(502, GrpcStatus.unavailable, ErrorCode.badGateway, why);
    }
    if (this.h2 && out.host === undefined) out.host = h.authority ?? ctx.service;
    this.toHttp(out);
  }

  // ---- the request body ----

  bodyData(chunk: Buffer): boolean {
    if (this.app) {
      if (this.app.write(chunk)) return true;
      this.app.once('drain', this.conn.reader.resume);
      return false;
    }
    if (this.body) return this.body.push(chunk);
    this.queued?.push(chunk);
    return true;
  }

  requestEnd(): void {
    this.requestEnded = true;
    if (this.app) this.app.end();
    else if (this.body) this.body.push(null);
    if (this.answerDone) this.conn.finished(this, true);
  }

  private takeQueued(write: (c: Buffer) => void): void {
    const q = this.queued ?? [];
    this.queued = undefined;
    for (const c of q) write(c);
  }

  // ---- to an http:// target (undici dispatch) ----

  private toHttp(headers: Record<string, string | string[]>): void {
    const h = this.head;
    const withBody = h.body !== false;
    if (withBody) {
      this.body = new Readable({ read: () => this.conn.reader.resume() });
      this.takeQueued((c) => this.body!.push(c));
      if (this.requestEnded) this.body.push(null);
    } else this.queued = undefined;
    const config = this.conn.ctx.config!;
    this.httpOptions = {
      path: h.path,
      method: h.method as Dispatcher.HttpMethod,
      headers,
      body: withBody ? this.body : undefined,
      headersTimeout: config.headersTimeoutMs,
      bodyTimeout: config.bodyTimeoutMs,
    };
    this.dispatchHttp();
    this.stream.resume();
  }

  /** The request's options for undici (kept for the one replay of a request without a body). */
  private httpOptions: Dispatcher.DispatchOptions | undefined;

  /** Sends the request to the target: the exchange is undici's handler itself (no closures per request). */
  private dispatchHttp(): void {
    this.conn.ctx.dispatcher!.dispatch(this.httpOptions!, this);
  }

  // ---- undici's handler (the answer from an http:// target) ----

  onRequestStart(c: Dispatcher.DispatchController): void {
    this.controller = c;
    if (this.aborted) c.abort(new Error('the exchange was reset'));
  }

  onResponseStart(
    c: Dispatcher.DispatchController,
    status: number,
    hs: Record<string, string | string[] | undefined>,
  ): void {
    if (status < 200) return;
    if (this.aborted) return c.abort(new Error('the exchange was reset'));
    this.answerStarted = true;
    // The sidecar's own headers (x-request-id) first, the target's after them (and over them): one object.
    const out = (
      this.h2 ? h2AnswerHeaders(hs as IncomingHttpHeaders) : responseHeaders(hs, this.facade?.set)
    ) as Record<string, string | string[]>;
    this.answerHead({ status, headers: this.facade && this.h2 ? { ...this.facade.set, ...out } : out });
  }

  onResponseData(c: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.aborted) return;
    if (this.facade) countResponse(this.facade as unknown as ServerResponse, chunk.length);
    if (!this.frameData(chunk)) {
      c.pause();
      this.stream.once('drain', () => c.resume());
    }
  }

  onResponseEnd(
    _c: Dispatcher.DispatchController,
    trailers: Record<string, string | string[] | undefined>,
  ): void {
    const t = trailers && Object.keys(trailers).length > 0 ? (trailers as Record<string, string>) : undefined;
    this.answerEnd(t);
  }

  onResponseError(_c: Dispatcher.DispatchController, err: Error): void {
    if (this.aborted || this.answerDone) return;
    if (this.answerStarted) return this.resetAnswer();
    // An idempotent request without a body is sent once more before the sidecar answers an error.
    if (this.head.body === false && IDEMPOTENT.has(this.head.method) && this.attempt++ === 0)
      return this.dispatchHttp();
    const f = classify(err, 'target');
    this.error(f.status, GrpcStatus.unavailable, f.code, `target: ${f.message}`);
  }

  // ---- to an h2c:// or h2:// target ----

  private toH2(target: string, headers: Record<string, string | string[]>): void {
    const h = this.head;
    const { svc, ctx } = this.conn;
    const authority = h.authority ?? (headers.host as string | undefined) ?? ctx.service;
    for (const k of CONNECTION_SPECIFIC) delete headers[k];
    let app: http2.ClientHttp2Stream;
    try {
      app = svc.h2
        .session(target, ctx.service, ctx.config!)
        .request(
          { ':method': h.method, ':path': h.path, ':authority': authority, ...headers },
          { endStream: false },
        );
    } catch (err) {
      this.conn.log.warn({ err: (err as Error).message }, 'h2 target unavailable');
      return this.error(503, GrpcStatus.unavailable, ErrorCode.targetUnavailable, (err as Error).message);
    }
    this.app = app;
    // The session's failure (a TLS handshake the app's certificate failed, a refused connection) reaches the
    // stream as its error: the answer names it rather than only the reset code.
    let appError: Error | undefined;
    app.on('error', (err: Error) => {
      appError = err;
    });
    this.takeQueued((c) => app.write(c));
    if (this.requestEnded) app.end();
    let trailers: Record<string, string | string[]> | undefined;
    app.on('response', (hs: IncomingHttpHeaders, flags: number) => {
      this.answerStarted = true;
      const endStream = (flags & http2.constants.NGHTTP2_FLAG_END_STREAM) !== 0;
      const out = this.h2 ? plainHeaders(hs) : (responseHeaders(plainHeaders(hs)) as Record<string, string>);
      this.answerHead({ status: Number(hs[':status'] ?? 200), headers: out, endStream });
    });
    app.on('data', (chunk: Buffer) => {
      if (this.answerDone) return;
      if (!this.frame(dataFrames(chunk))) {
        app.pause();
        this.stream.once('drain', () => app.resume());
      }
    });
    app.on('trailers', (t: IncomingHttpHeaders) => {
      trailers = plainHeaders(t);
    });
    app.once('end', () => {
      if (this.answerStarted && !this.answerDone) this.answerEnd(trailers);
    });
    app.once('close', () => {
      if (this.answerDone || this.aborted) return;
      if (!this.answerStarted)
        return this.error(
          502,
          GrpcStatus.unavailable,
          ErrorCode.badGateway,
          appError ? `target: ${appError.message}` : `target reset the stream (code ${app.rstCode})`,
        );
      if (app.rstCode !== undefined && app.rstCode !== http2.constants.NGHTTP2_NO_ERROR) this.resetAnswer();
      else this.answerEnd(trailers);
    });
    this.stream.resume();
  }

  // ---- the answer ----

  /** Queues a frame; small answers go out in one write at the end of the loop turn (or at the answer's end). */
  private frame(buf: Buffer): boolean {
    this.pending.push(buf);
    this.pendingBytes += buf.length;
    if (this.pendingBytes >= COALESCE) return this.flush();
    if (!this.flushQueued) {
      this.flushQueued = true;
      // The end of the loop turn, as the SDK's own uncork: an HTTP/2 answer's head, data and trailers come in
      // separate ticks of one turn and go out as one write.
      setImmediate(flushSoon, this);
    }
    return true;
  }

  /**
   * Queues an answer chunk as a DATA frame: a small one as its header and the chunk as it came (copied once, by
   * the flush's concat, not into a frame buffer first).
   */
  private frameData(chunk: Buffer): boolean {
    if (chunk.length > COALESCE) return this.frame(dataFrames(chunk));
    const header = Buffer.allocUnsafe(5);
    header[0] = FrameType.Data;
    header.writeUInt32BE(chunk.length, 1);
    this.pending.push(header);
    this.pendingBytes += 5;
    return this.frame(chunk);
  }

  flush(): boolean {
    this.flushQueued = false;
    if (this.pending.length === 0) return true;
    const buf = this.pending.length === 1 ? this.pending[0]! : Buffer.concat(this.pending, this.pendingBytes);
    this.pending = [];
    this.pendingBytes = 0;
    if (this.conn.dead || !this.stream.writable) return true;
    return this.stream.write(buf);
  }

  private answerHead(head: ResponseHead): void {
    this.facade?.answered(head.status, head.headers);
    this.obs?.noteHead(head);
    if (this.conn.closesAfter()) head.last = true;
    this.frame(encodeFrame(FrameType.Head, JSON.stringify(head)));
    if (head.endStream) this.complete();
  }

  private answerEnd(trailers: Record<string, string | string[]> | undefined): void {
    if (this.answerDone) return;
    if (trailers) {
      this.obs?.noteTrailers(trailers);
      this.frame(encodeFrame(FrameType.Trailers, JSON.stringify(trailers)));
    } else this.frame(END_FRAME);
    this.complete();
  }

  private complete(): void {
    this.answerDone = true;
    this.flush();
    if (this.facade) {
      this.facade.writableFinished = true;
      this.facade.close();
    }
    this.obs?.finish('completed');
    if (this.requestEnded) this.conn.finished(this, true);
    else {
      // The rest of the request has nowhere to go: it is dropped (the opener resets or ends it).
      this.app?.close(http2.constants.NGHTTP2_CANCEL);
      this.body?.destroy();
      this.conn.finished(this, false);
    }
  }

  /** The sidecar's own answer: gRPC trailers-only, else JSON marked with x-geminio-error. */
  private error(status: number, grpcCode: number, code: string, message: string): void {
    if (this.answerDone || this.aborted) return;
    if (this.answerStarted) return this.resetAnswer();
    this.answerStarted = true;
    if (this.grpc) return this.answerHead(grpcErrorHead(grpcCode, message));
    const body = Buffer.from(JSON.stringify({ error: message, code }));
    const headers: Record<string, string> = {
      ...this.facade?.set,
      'content-type': 'application/json',
      'content-length': String(body.length),
      'x-geminio-error': code,
    };
    this.answerHead({ status, headers });
    if (this.head.method !== 'HEAD') this.frame(dataFrames(body));
    this.answerEnd(undefined);
  }

  /** The answer broke off after it started: the exchange is reset, and the stream with it. */
  private resetAnswer(): void {
    this.flush();
    if (!this.conn.dead && this.stream.writable)
      this.stream.write(
        encodeFrame(FrameType.Reset, JSON.stringify({ code: http2.constants.NGHTTP2_INTERNAL_ERROR })),
      );
    this.abort();
    this.conn.close();
  }

  /** The opener reset the exchange or went away: the request at the target is aborted. */
  abort(): void {
    if (this.aborted || this.answerDone) return;
    this.aborted = true;
    this.controller?.abort(new Error('the exchange was reset'));
    this.app?.close(http2.constants.NGHTTP2_CANCEL);
    this.body?.destroy(new Error('cancelled'));
    this.facade?.close();
    this.obs?.finish('reset');
  }
}

/** The END frame (never written into: the stream and the flush's concat only read it). */
const END_FRAME = encodeFrame(FrameType.End);

/** The end-of-turn flush of an exchange's answer (no closure per answer). */
function flushSoon(x: InboundExchange): void {
  x.flush();
}

/** An HTTP/1.1 target's answer headers for an HTTP/2 client: without the connection-specific ones. */
function h2AnswerHeaders(h: IncomingHttpHeaders): Record<string, string | string[]> {
  const out = responseHeaders(h) as Record<string, string | string[]>;
  for (const k of CONNECTION_SPECIFIC) delete out[k];
  return out;
}

/** Serves the exchange streams of every service (the router hands each one over with its context). */
export class ExchangeService {
  constructor(
    readonly deps: H2Deps,
    readonly h2: H2Inbound,
  ) {}

  serve(stream: Stream, ctx: ExchangeStreamContext): void {
    const log = this.deps.logger.child({
      service: ctx.service,
      clientId: ctx.clientId,
      streamId: ctx.streamId,
    });
    new ExchangeConn(stream, this, ctx, log);
  }
}

/** A target's metric label, its address without the scheme (one string per configured target, not per call). */
const targetLabels = new Map<string, string>();
function targetLabel(target: string): string {
  let l = targetLabels.get(target);
  if (l === undefined) {
    l = target.replace(/^[a-z0-9+]+:\/\//, '');
    if (targetLabels.size < 1_000) targetLabels.set(target, l);
  }
  return l;
}
