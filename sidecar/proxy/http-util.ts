/**
 * HTTP helpers shared by every HTTP path: the JSON error body, how an error maps to a status, which headers are
 * hop-by-hop, bounded body reading.
 */
import type { IncomingHttpHeaders, IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';

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
export function sendError(res: ServerResponse, status: number, code: string, message: string): void {
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
export function sendDenied(res: ServerResponse, d: { status?: number; reason: string }): void {
  const status = d.status ?? 403;
  sendError(res, status, deniedCode(status), d.reason);
}

/** The JSON `code` of a denial by its status. */
export function deniedCode(status: number): string {
  if (status === 429) return ErrorCode.rateLimited;
  if (status === 503) return ErrorCode.authzUnavailable;
  return ErrorCode.forbidden;
}

export function sendJson(res: ServerResponse, status: number, value: unknown): void {
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

/** The header names a Connection header lists (they are hop-by-hop too), or undefined when there is none. */
function connectionNamed(connection: string | string[] | undefined): Set<string> | undefined {
  if (connection === undefined) return undefined;
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
  const out: Record<string, string | string[]> = { ...extra };
  for (const k in headers) {
    const v = headers[k];
    if (v === undefined || HOP_BY_HOP.has(k) || named?.has(k) || Object.hasOwn(extra, k)) continue;
    if (dropPrefix !== undefined && k.startsWith(dropPrefix)) continue;
    out[k] = v;
  }
  return out;
}

/** Response headers to send back: hop-by-hop ones removed (Node frames the body itself). */
export function responseHeaders(headers: Record<string, string | string[] | undefined>): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
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

/** Reads a whole body up to `max` bytes (RPC and publish bodies are one frame each, so they are bounded). */
export async function readBody(req: IncomingMessage, max: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > max) throw new BodyTooLargeError(`body larger than ${max} bytes`);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks, size);
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
