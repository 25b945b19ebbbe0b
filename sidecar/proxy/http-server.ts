/**
 * The HTTP server every HTTP path of the sidecar runs on (outbound listeners, HTTP tunnels, the per-service servers
 * of the inbound side), with the limits of `httpServer` in the config: a head that takes longer than
 * headersTimeoutMs, a body that stalls for bodyIdleTimeoutMs (408), too many or too large headers (431), an unknown
 * transfer coding (501), a malformed request (400). Each such client gets a status line with `connection: close`
 * (as nginx and Node give), never a bare FIN or RST, and a warn log line.
 */
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { HttpServerConfig } from '../config/schema.js';
import type { RefusalSink } from '../observe/access-log.js';
import type { Logger } from '../observe/logger.js';
import { hasBody } from './http-util.js';

/** The defaults of `httpServer` (for servers built without a config, e.g. in unit tests). */
export const DEFAULT_HTTP_SERVER: HttpServerConfig = {
  headersTimeoutMs: 30_000,
  bodyIdleTimeoutMs: 30_000,
  maxHeaderBytes: 32 * 1024,
  maxHeaders: 100,
  maxConnections: 1024,
};

/** The status a parser error from Node's HTTP server gets (undefined: the socket itself failed, no answer). */
export function clientErrorStatus(err: Error & { code?: string }): number | undefined {
  switch (err.code) {
    case 'ECONNRESET':
    case 'EPIPE':
    case 'ERR_STREAM_DESTROYED':
      return undefined;
    case 'ERR_HTTP_REQUEST_TIMEOUT':
      return 408;
    case 'HPE_HEADER_OVERFLOW':
      return 431;
    case 'HPE_INVALID_TRANSFER_ENCODING':
      // Both framings at once is a malformed (smuggling) request; any other case is a coding we do not do.
      return /content-length/i.test(err.message) ? 400 : 501;
    default:
      return 400;
  }
}

/** A whole error answer written on a raw socket (no ServerResponse exists for a request that did not parse). */
export function rawStatus(status: number, code: string, message: string): string {
  const body = JSON.stringify({ error: message, code });
  return (
    `HTTP/1.1 ${status} ${http.STATUS_CODES[status] ?? 'Error'}\r\ncontent-type: application/json\r\n` +
    `content-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`
  );
}

const CODES: Record<number, string> = {
  400: 'BAD_REQUEST',
  408: 'REQUEST_TIMEOUT',
  413: 'PAYLOAD_TOO_LARGE',
  431: 'HEADERS_TOO_LARGE',
  501: 'NOT_IMPLEMENTED',
};

/** How long a socket that got an error answer may stay to let the client read it before it is destroyed. */
const LINGER_MS = 2_000;

/** Ends the socket after `text`, and destroys it if the client does not close its side soon. */
function answerAndClose(socket: Duplex, text: string): void {
  if (socket.destroyed) return;
  socket.on('error', () => {});
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  socket.end(text);
  // Read and drop what the client still sends, so a close with unread data does not reset the answer away.
  socket.resume();
  setTimeout(() => socket.destroy(), LINGER_MS).unref();
}

/** The sink of each server's logger (admit() and refuse() are given the logger the server was made with). */
const SINKS = new WeakMap<Logger, RefusalSink>();

function refused(
  log: Logger,
  status: number,
  reason: string,
  req: IncomingMessage | undefined,
  socket: Duplex,
): void {
  try {
    SINKS.get(log)?.(log, status, reason, req, socket);
  } catch {
    // an access line never breaks the refusal
  }
}

/** Connections on which a request was refused: nothing after it on them is served (pipelined or not). */
const REFUSED = new WeakSet<object>();

/** Answers a refused request on its response, closes the connection after it, and logs. */
export function refuse(
  req: IncomingMessage,
  res: ServerResponse,
  status: number,
  message: string,
  log: Logger,
): void {
  log.warn({ status, method: req.method, path: req.url, reason: message }, 'bad request refused');
  refused(log, status, message, req, req.socket);
  REFUSED.add(req.socket);
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const body = JSON.stringify({ error: message, code: CODES[status] ?? 'BAD_REQUEST' });
  res.shouldKeepAlive = false;
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(body),
    connection: 'close',
  });
  res.end(body);
  res.once('finish', () => setTimeout(() => req.socket.destroy(), LINGER_MS).unref());
}

/** What is wrong with a parsed request head, beyond what Node's parser checks (undefined: nothing). */
function headProblem(req: IncomingMessage, limits: HttpServerConfig): [number, string] | undefined {
  if (req.rawHeaders.length / 2 > limits.maxHeaders) {
    return [431, `more than ${limits.maxHeaders} header lines`];
  }
  const te = req.headers['transfer-encoding'];
  if (te !== undefined && te.trim().toLowerCase() !== 'chunked') {
    return [501, `transfer coding "${te}" is not supported`];
  }
  return undefined;
}

/**
 * 408 for a request body that sends nothing for `ms`. Progress is every chunk the parser pushes; a body whose
 * buffer is full (its consumer is slow: backpressure) is not idle.
 */
function watchBody(req: IncomingMessage, res: ServerResponse, ms: number, log: Logger): void {
  let last = Date.now();
  let started: (yes: boolean) => void = () => {};
  STARTED.set(
    req,
    new Promise<boolean>((resolve) => {
      started = resolve;
    }),
  );
  const push = req.push.bind(req);
  req.push = (chunk: unknown, encoding?: BufferEncoding) => {
    last = Date.now();
    started(true);
    return push(chunk, encoding);
  };
  const stop = () => {
    clearInterval(timer);
    started(req.complete);
  };
  const timer = setInterval(
    () => {
      if (req.complete || req.destroyed || res.writableEnded) return stop();
      const now = Date.now();
      // A full buffer: the consumer is not reading (backpressure) and Node stopped reading the socket, so the
      // client cannot send. Below that Node still reads, and a client that sends nothing is idle.
      if (req.readableLength >= req.readableHighWaterMark) last = now;
      if (now - last < ms) return;
      stop();
      refuse(req, res, 408, `the request body sent nothing for ${ms} ms`, log);
    },
    Math.max(25, Math.floor(ms / 4)),
  );
  timer.unref();
  req.once('end', stop);
  req.once('close', stop);
}

const STARTED = new WeakMap<IncomingMessage, Promise<boolean>>();

/**
 * Resolves true once the request body sent its first byte (at once for a request without a watched body), false
 * when it was refused (408) or went away first. Wait for it before taking a pooled connection for the request, so
 * that clients that do not send never hold the pool.
 */
export function bodyStarted(req: IncomingMessage): Promise<boolean> | true {
  if (req.complete || req.readableLength > 0) return true;
  return STARTED.get(req) ?? true;
}

export interface HttpServerOptions {
  keepAliveTimeoutMs: number;
  logger: Logger;
  /** Told of each refused request (access log, metrics). */
  onRefused?: RefusalSink;
}

/** Checks a request against the limits; false when it was refused (the handler must not run). */
export function admit(
  req: IncomingMessage,
  res: ServerResponse,
  limits: HttpServerConfig,
  log: Logger,
): boolean {
  if (REFUSED.has(req.socket)) {
    // Pipelined after a refused request: never served (the connection closes after the refusal).
    req.resume();
    return false;
  }
  const problem = headProblem(req, limits);
  if (problem) {
    refuse(req, res, problem[0], problem[1], log);
    return false;
  }
  if (hasBody(req) && !req.complete) watchBody(req, res, limits.bodyIdleTimeoutMs, log);
  return true;
}

/**
 * An http.Server with the limits applied. `handler` sees only requests within them; `upgrade` (when given)
 * upgrade requests within them (the others get their status on the raw socket).
 */
export function createHttpServer(
  limits: HttpServerConfig,
  o: HttpServerOptions,
  handler: (req: IncomingMessage, res: ServerResponse) => void,
): http.Server {
  const log = o.logger;
  if (o.onRefused) SINKS.set(log, o.onRefused);
  const server = http.createServer(
    {
      keepAliveTimeout: o.keepAliveTimeoutMs,
      // requestTimeout would bound a whole (long) upload; the head and the body's idle time are bounded instead.
      requestTimeout: 0,
      headersTimeout: limits.headersTimeoutMs,
      connectionsCheckingInterval: Math.min(1_000, Math.max(50, Math.floor(limits.headersTimeoutMs / 4))),
      maxHeaderSize: limits.maxHeaderBytes,
    },
    (req, res) => {
      if (admit(req, res, limits, log)) handler(req, res);
    },
  );
  // One more than allowed, so that a request over the limit is seen (Node silently drops the rest).
  server.maxHeadersCount = limits.maxHeaders + 1;
  server.maxConnections = limits.maxConnections;
  server.on('clientError', (err: Error & { code?: string }, socket: Duplex) => {
    const status = clientErrorStatus(err);
    if (REFUSED.has(socket)) return; // already answered and closing
    if (status === undefined) {
      socket.destroy();
      return;
    }
    log.warn({ status, err: err.message, code: err.code }, 'bad request refused');
    refused(log, status, err.message, undefined, socket);
    REFUSED.add(socket);
    answerAndClose(socket, rawStatus(status, CODES[status] ?? 'BAD_REQUEST', err.message));
  });
  server.on('drop', () =>
    log.warn({ maxConnections: limits.maxConnections }, 'connection refused: too many'),
  );
  return server;
}

/** For an `upgrade` handler: false (and the status sent on the raw socket) when the head is over the limits. */
export function admitUpgrade(
  req: IncomingMessage,
  socket: Duplex,
  limits: HttpServerConfig,
  log: Logger,
): boolean {
  if (REFUSED.has(req.socket)) {
    socket.destroy();
    return false;
  }
  const problem = headProblem(req, limits);
  if (!problem) return true;
  log.warn(
    { status: problem[0], method: req.method, path: req.url, reason: problem[1] },
    'bad request refused',
  );
  refused(log, problem[0], problem[1], req, socket);
  answerAndClose(socket, rawStatus(problem[0], CODES[problem[0]] ?? 'BAD_REQUEST', problem[1]));
  return false;
}
