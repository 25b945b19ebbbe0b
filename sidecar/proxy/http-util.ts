/**
 * HTTP helpers shared by every HTTP path: the JSON error body, how an error maps to a status, which headers are
 * hop-by-hop, bounded body reading.
 */
import type { IncomingHttpHeaders, IncomingMessage, OutgoingHttpHeaders } from 'node:http';
import type { Readable } from 'node:stream';

/**
 * What the sidecar's own answers need of a response: an HTTP/1.1 ServerResponse, or HTTP/2's compatibility
 * Http2ServerResponse (the gateway over HTTP/2).
 */
export interface Answerable {
  readonly headersSent: boolean;
  writeHead(status: number, headers: OutgoingHttpHeaders): unknown;
  end(body: string): unknown;
  destroy(): unknown;
}

/** Stable error codes of the sidecar's own HTTP answers (the `code` field of the JSON body). */
export const ErrorCode = {
  upstreamUnavailable: 'UPSTREAM_UNAVAILABLE',
  upstreamTimeout: 'UPSTREAM_TIMEOUT',
  badGateway: 'BAD_GATEWAY',
  targetUnavailable: 'TARGET_UNAVAILABLE',
  notFound: 'NOT_FOUND',
  noSuchMethod: 'NO_SUCH_METHOD',
  remoteError: 'REMOTE_ERROR',
  forbidden: 'FORBIDDEN',
  rateLimited: 'RATE_LIMITED',
  authzUnavailable: 'AUTHZ_UNAVAILABLE',
  tooLarge: 'PAYLOAD_TOO_LARGE',
} as const;

/** The upstream End is not connected (never was, or is reconnecting). */
export class UpstreamUnavailableError extends Error {
  readonly code = 'GEMINIO_SIDECAR_ERR_UPSTREAM_UNAVAILABLE';
}

export interface HttpFailure {
  status: number;
  code: string;
  message: string;
}

/** Maps an error from undici, the SDK or the sidecar to the status the client gets. */
export function classify(err: unknown, side: 'upstream' | 'target' = 'upstream'): HttpFailure {
  const e = err as { code?: string; message?: string };
  const message = e?.message ?? String(err);
  const unavailable = side === 'upstream' ? ErrorCode.upstreamUnavailable : ErrorCode.targetUnavailable;
  switch (e?.code) {
    case 'UND_ERR_HEADERS_TIMEOUT':
    case 'UND_ERR_BODY_TIMEOUT':
    case 'UND_ERR_CONNECT_TIMEOUT':
    case 'GEMINIO_ERR_STREAM_OPEN_TIMEOUT':
    case 'GEMINIO_ERR_TIMEOUT':
    case 'ETIMEDOUT':
      return { status: 504, code: ErrorCode.upstreamTimeout, message };
    case 'GEMINIO_SIDECAR_ERR_UPSTREAM_UNAVAILABLE':
    case 'GEMINIO_ERR_CONNECTION_CLOSED':
    case 'GEMINIO_ERR_STREAM_REFUSED':
    case 'GEMINIO_ERR_LIMIT':
    case 'ECONNREFUSED':
    case 'EHOSTUNREACH':
    case 'ENOTFOUND':
      return { status: 503, code: unavailable, message };
    default:
      return { status: 502, code: ErrorCode.badGateway, message };
  }
}

/** Sends `{ "error": message, "code": code }` unless a response already started (then the socket is cut). */
export function sendError(res: Answerable, status: number, code: string, message: string): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const body = JSON.stringify({ error: message, code });
  // x-geminio-error marks the sidecar's own errors, so a balancer on the near side tells them from the service's.
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(body),
    'x-geminio-error': code,
  });
  res.end(body);
}

/** Answers a denied request: the status the hook chose (403 by default) and its reason. */
export function sendDenied(res: Answerable, d: { status?: number; reason: string }): void {
  const status = d.status ?? 403;
  sendError(res, status, deniedCode(status), d.reason);
}

/** The JSON `code` of a denial by its status. */
export function deniedCode(status: number): string {
  if (status === 429) return ErrorCode.rateLimited;
  if (status === 503) return ErrorCode.authzUnavailable;
  return ErrorCode.forbidden;
}

export function sendJson(res: Answerable, status: number, value: unknown): void {
  const body = JSON.stringify(value, (_k, v) => (typeof v === 'bigint' ? String(v) : v), 2);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  // undici refuses Expect; the sidecar answers 100-continue itself (see the outbound listener).
  'expect',
]);

/** What the usual Connection headers name (read only): no Set, no split per request for them. */
const KEEP_ALIVE: ReadonlySet<string> = new Set(['keep-alive']);
const CLOSE: ReadonlySet<string> = new Set(['close']);

/** The header names a Connection header lists (they are hop-by-hop too), or undefined when there is none. */
function connectionNamed(connection: string | string[] | undefined): ReadonlySet<string> | undefined {
  if (connection === undefined) return undefined;
  if (connection === 'keep-alive') return KEEP_ALIVE;
  if (connection === 'close') return CLOSE;
  const named = new Set<string>();
  for (const s of String(connection).toLowerCase().split(',')) {
    const name = s.trim();
    if (name) named.add(name);
  }
  return named;
}

/**
 * Request headers to forward: hop-by-hop ones, those named in Connection and those with `dropPrefix` removed.
 * `extra` (the sidecar's own, e.g. identity) come first and replace any client header of the same name, so no
 * number of client headers can push them past the next hop's header limit.
 */
export function forwardHeaders(
  headers: IncomingHttpHeaders,
  extra: Record<string, string> = {},
  dropPrefix?: string,
): Record<string, string | string[]> {
  const named = connectionNamed(headers.connection);
  // Object.assign, not a spread: on V8 (Node 20) a spread copy of a non-empty object gets a hidden class outside
  // the transition tree, so each header added to it below made new hidden classes, every request (old-space
  // garbage, slow property adds, megamorphic reads downstream: docs/BENCHMARKS.md, issue 14 round 5).
  const out: Record<string, string | string[]> = Object.assign({}, extra);
  for (const k in headers) {
    const v = headers[k];
    if (v === undefined || HOP_BY_HOP.has(k) || named?.has(k) || Object.hasOwn(extra, k)) continue;
    if (dropPrefix !== undefined && k.startsWith(dropPrefix)) continue;
    out[k] = v;
  }
  return out;
}

/**
 * Response headers to send back: hop-by-hop ones removed (Node frames the body itself). After a copy of `first`
 * when given (the sidecar's own; `first` is not changed), replacing those of the same name.
 */
export function responseHeaders(
  headers: Record<string, string | string[] | undefined>,
  first?: Readonly<OutgoingHttpHeaders>,
): OutgoingHttpHeaders {
  // A copy by Object.assign, not a spread: see forwardHeaders.
  const out: OutgoingHttpHeaders = first ? Object.assign({}, first) : {};
  for (const k in headers) {
    const v = headers[k];
    if (v === undefined || HOP_BY_HOP.has(k.toLowerCase())) continue;
    out[k] = v;
  }
  return out;
}

/** A request body can only be replayed when there is none. */
export function hasBody(req: IncomingMessage): boolean {
  const len = req.headers['content-length'];
  if (len !== undefined) return Number(len) > 0;
  return req.headers['transfer-encoding'] !== undefined;
}

export class BodyTooLargeError extends Error {}

/**
 * Reads a whole body up to `max` bytes (RPC and publish bodies are one frame each, so they are bounded). A
 * content-length over `max`, or a body that grows past it, is a BodyTooLargeError at once; the request is then
 * left unread (not destroyed), so the caller can still answer 413 on it.
 */
export function readBody(req: Readable & { headers: IncomingHttpHeaders }, max: number): Promise<Buffer> {
  const tooLarge = () => new BodyTooLargeError(`body larger than ${max} bytes`);
  if (Number(req.headers['content-length']) > max) return Promise.reject(tooLarge());
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const stop = () => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
      req.off('close', onClose);
    };
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size <= max) return void chunks.push(chunk);
      stop();
      req.pause();
      reject(tooLarge());
    };
    const onEnd = () => {
      stop();
      resolve(Buffer.concat(chunks, size));
    };
    const onError = (err: Error) => {
      stop();
      reject(err);
    };
    const onClose = () => onError(new Error('the request went away before its body ended'));
    req.on('data', onData);
    req.once('end', onEnd);
    req.once('error', onError);
    req.once('close', onClose);
  });
}

/**
 * The raw request head of an upgrade request, to replay it on another connection: `extra` right after the request
 * line (before any client header), client headers of the same names or with `dropPrefix` left out.
 */
export function rawRequestHead(
  req: IncomingMessage,
  extra: Record<string, string> = {},
  dropPrefix?: string,
): string {
  let head = `${req.method} ${req.url} HTTP/${req.httpVersion}\r\n`;
  for (const [k, v] of Object.entries(extra)) head += `${k}: ${v}\r\n`;
  for (let i = 0; i < req.rawHeaders.length; i += 2) {
    const name = req.rawHeaders[i] ?? '';
    const lower = name.toLowerCase();
    if (Object.hasOwn(extra, lower) || (dropPrefix !== undefined && lower.startsWith(dropPrefix))) continue;
    head += `${name}: ${req.rawHeaders[i + 1]}\r\n`;
  }
  return `${head}\r\n`;
}

/** A whole raw HTTP/1.1 error response, for sockets taken over by an upgrade. */
export function rawErrorResponse(status: number, code: string, message: string): string {
  const body = JSON.stringify({ error: message, code });
  return (
    `HTTP/1.1 ${status} ${code}\r\ncontent-type: application/json\r\n` +
    `content-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`
  );
}

export const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE']);
