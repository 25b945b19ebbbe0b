/**
 * HTTP forwarding, what both directions share: `proxyRequest` sends one parsed request through an undici
 * dispatcher (a Pool over geminio streams outbound, a Pool to the target inbound) and streams the answer back
 * (bodies are never buffered whole; backpressure holds both ways); `relayUpgrade` carries an Upgrade (WebSocket)
 * request to a fresh connection and splices the two once the far side answers 101.
 */
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type net from 'node:net';
import type { Duplex } from 'node:stream';
import type { Dispatcher } from 'undici';
import { countResponse } from '../observe/access-log.js';
import { bodyStarted } from './http-server.js';
import {
  classify,
  forwardHeaders,
  hasBody,
  IDEMPOTENT,
  responseHeaders,
  sendError,
  UpstreamUnavailableError,
} from './http-util.js';
import { splice } from './splice.js';

/** What a request is dispatched through: an undici Pool, or the exchange streams of an endpoint (./exchange.ts). */
export type Dispatch = Pick<Dispatcher, 'dispatch'>;

export interface ProxyOptions {
  dispatcher?: Dispatch;
  headersTimeoutMs: number;
  bodyTimeoutMs: number;
  /** Extra attempts for idempotent requests without a body whose stream failed before an answer. */
  retries: number;
  side: 'upstream' | 'target';
  onRetry?: () => void;
  /**
   * Balancing across endpoints: the dispatcher of each attempt (a retry may go elsewhere; undefined: none left,
   * the last failure is answered), and how each attempt ended (for the balancer's latency and failure counts).
   */
  attempt?: (n: number) => Dispatch | undefined;
  onAttemptEnd?: (r: { err?: Error; status?: number; sidecarError: boolean; gone: boolean }) => void;
  /** The request ended before its first attempt (the client left before its body began). */
  onNoAttempt?: () => void;
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
  status: number | undefined;
  /** The answer is an error of the far sidecar itself (it carries x-geminio-error), not of the service. */
  sidecarError = false;
  /** What the attempt failed with (set when it settles). */
  err: Error | undefined;
  private settle!: (err?: Error) => void;
  readonly settled = new Promise<Error | undefined>((resolve) => {
    this.settle = resolve;
  });
  private waitingDrain = false;
  /** Made on the first backpressure only (most answers never wait for a drain). */
  private resume: (() => void) | undefined;

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
    this.status = statusCode;
    this.sidecarError = statusCode >= 500 && headers['x-geminio-error'] !== undefined;
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
      this.resume ??= () => {
        this.waitingDrain = false;
        this.controller?.resume();
      };
      this.res.once('drain', this.resume);
    }
  }

  onResponseEnd(_c: Dispatcher.DispatchController, trailers?: Record<string, unknown>): void {
    this.done = true;
    // Trailers go to a chunked answer (Node writes them only there; the answer's `trailer` header names them).
    if (trailers && !this.res.destroyed && Object.keys(trailers).length > 0)
      this.res.addTrailers(trailers as Record<string, string>);
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
    this.err = err;
    this.settle(err);
  }
}

function noop(): void {}

interface Watched {
  res: ServerResponse;
  abandon(): void;
  /** Its neighbours in its connection's list of requests in flight (InFlight). */
  prev: Watched | undefined;
  next: Watched | undefined;
}

/**
 * The requests in flight on one client connection: a list through the requests themselves, not a Set. A Set that
 * empties and fills again per request (keep-alive) rehashes each time, and once it is old V8 allocates each new
 * table in the old generation: ~120 bytes of old-space garbage per request (issue 14 round 5).
 */
export class InFlight {
  private first: Watched | undefined;

  add(w: Watched): void {
    w.next = this.first;
    if (this.first) this.first.prev = w;
    this.first = w;
  }

  delete(w: Watched): void {
    if (w.prev) w.prev.next = w.next;
    else if (this.first === w) this.first = w.next;
    else return; // not in the list (already taken out)
    if (w.next) w.next.prev = w.prev;
    w.prev = undefined;
    w.next = undefined;
  }

  /** Each request in flight (fn may take it out of the list). */
  each(fn: (w: Watched) => void): void {
    for (let w = this.first; w; ) {
      const next = w.next;
      fn(w);
      w = next;
    }
  }
}

/**
 * One request being forwarded: the attempt in flight, aborted when the client goes away or the sidecar answered
 * it itself. Its response's one 'close' listener (forwardClosed) finds it under FORWARD: no closures per request.
 */
class Forward implements Watched {
  current: Exchange | undefined;
  prev: Watched | undefined;
  next: Watched | undefined;

  constructor(
    readonly res: ServerResponse,
    readonly inFlight: InFlight | undefined,
  ) {}

  abandon(): void {
    const c = this.current;
    if (!c || c.done) return;
    c.gone = true;
    c.controller?.abort(
      new Error(this.res.writableFinished ? 'request already answered' : 'client went away'),
    );
  }
}

const FORWARD = Symbol('geminio.forward');
type Forwarded = ServerResponse & { [FORWARD]?: Forward };

/** The 'close' listener of every forwarded response (`this` is the response). */
function forwardClosed(this: Forwarded): void {
  const f = this[FORWARD];
  if (!f) return;
  this[FORWARD] = undefined;
  f.inFlight?.delete(f);
  f.abandon();
}
const WATCHED = new WeakMap<object, InFlight>();

/** The requests in flight on a client connection; its end, error or close aborts those not answered yet. */
function watchSocket(socket: Duplex | null): InFlight | undefined {
  if (!socket) return undefined;
  const known = WATCHED.get(socket);
  if (known) return known;
  const live = new InFlight();
  WATCHED.set(socket, live);
  const gone = () => {
    live.each((w) => {
      if (w.res.writableFinished) return;
      w.abandon();
      w.res.destroy();
    });
  };
  socket.on('end', gone);
  socket.on('error', gone);
  socket.once('close', gone);
  return live;
}

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
  if (withBody && !(await bodyStarted(req))) return o.onNoAttempt?.();
  // The client went away, or the sidecar answered it itself (408 for a stalled body): the attempt in flight is
  // aborted, which frees its pooled connection (undici's bodyTimeout does not run while a response is paused).
  // One listener per request: a response's 'close' always follows its 'finish'.
  // The connection itself: a peer that ended (a stream's Dismiss, a FIN) or failed will not read this answer.
  // Watched on the socket, since its close (and so the response's) may never come while writes are pending on a
  // zero window; the socket is destroyed so that nothing waits on it. The socket's listeners are installed once
  // per connection (not per request): the requests in flight on it are a list (InFlight).
  const inFlight = watchSocket(req.socket as Duplex | null);
  const fwd = new Forward(res, inFlight);
  inFlight?.add(fwd);
  (res as Forwarded)[FORWARD] = fwd;
  res.on('close', forwardClosed);
  let lastFailure: ReturnType<typeof classify> | undefined;
  for (let attempt = 0; ; attempt++) {
    const dispatcher = o.attempt ? o.attempt(attempt) : o.dispatcher;
    if (!dispatcher) {
      const f =
        lastFailure ??
        classify(new UpstreamUnavailableError('no endpoint of the upstream can take it'), o.side);
      return sendError(res, f.status, f.code, f.message);
    }
    const exchange = new Exchange(res, withBody ? req : undefined);
    fwd.current = exchange;
    try {
      dispatcher.dispatch(
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
    exchange.err = err;
    o.onAttemptEnd?.(exchange);
    if (err === undefined || res.writableEnded) return;
    if (exchange.gone || res.headersSent || res.destroyed) {
      res.destroy();
      return;
    }
    const failure = classify(err, o.side);
    lastFailure = failure;
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
