/**
 * The HTTP gateway to an End's RPC and messaging, mounted on outbound HTTP listeners:
 * `POST /rpc/<method>` becomes `end.call(method, body)` and `POST /publish/<topic>` an acknowledged publish, so a
 * Go geminio service's registered methods can be called with curl. Requests come over HTTP/1.1 (IncomingMessage,
 * ServerResponse) or HTTP/2 (Node's compatibility Http2ServerRequest, Http2ServerResponse): the same answers.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import http2, { Http2ServerRequest, Http2ServerResponse } from 'node:http2';
import { NoSuchMethodError, RemoteError } from '../../sdk/index.js';
import type { Logger } from '../observe/logger.js';
import type { Direction, Metrics } from '../observe/metrics.js';
import { customCarrier, headerCarrier } from '../observe/tracing.js';
import type { HookRunner } from '../policy/hooks.js';
import {
  BodyTooLargeError,
  classify,
  ErrorCode,
  readBody,
  sendDenied,
  sendError,
} from '../proxy/http-util.js';
import { type EndSource, type Lease, lease } from './upstreams.js';

/** A gateway request: HTTP/1.1, or HTTP/2 through Node's compatibility objects. */
export type GatewayRequest = IncomingMessage | Http2ServerRequest;
export type GatewayResponse = ServerResponse | Http2ServerResponse;

export interface GatewayContext {
  listener: string;
  direction: Direction;
  source: EndSource;
  metrics: Metrics;
  hooks: HookRunner;
  logger: Logger;
  timeoutMs: number;
  maxBodyBytes: number;
}

/** The part of the path after `prefix`, URL-decoded, without the query; undefined when empty or malformed. */
export function pathName(url: string, prefix: string): string | undefined {
  const raw = url.slice(prefix.length).split('?')[0] ?? '';
  try {
    const name = decodeURIComponent(raw);
    return name === '' ? undefined : name;
  } catch {
    return undefined;
  }
}

async function prepare(
  req: GatewayRequest,
  res: GatewayResponse,
  ctx: GatewayContext,
  facts: { point: 'rpc' | 'message'; method?: string; topic?: string; path: string },
): Promise<{ body: Buffer } | undefined> {
  const end = ctx.source.current();
  const decision = await ctx.hooks.decide(facts.point, {
    clientId: end ? String(end.clientId) : undefined,
    method: facts.method,
    topic: facts.topic,
    path: facts.path,
    headers: req.headers,
    direction: ctx.direction,
    listener: ctx.listener,
  });
  if (!decision.allow) {
    dropRest(req, res);
    sendDenied(res, decision);
    return undefined;
  }
  let body: Buffer;
  try {
    body = await readBody(req, ctx.maxBodyBytes);
  } catch (err) {
    if (err instanceof BodyTooLargeError) {
      // The rest of the body is not wanted: over HTTP/1.1 the connection closes after the answer (as nginx does),
      // what already came is read and dropped meanwhile (unread, it would reset the answer away); over HTTP/2 only
      // the stream ends (dropRest).
      if (!(res instanceof Http2ServerResponse)) {
        res.shouldKeepAlive = false;
        req.resume();
      }
      dropRest(req, res);
      sendError(res, 413, ErrorCode.tooLarge, err.message);
    } else res.destroy();
    return undefined;
  }
  // Checked after reading the body so the connection stays usable for the next request.
  if (!ctx.source.current()) {
    sendError(res, 503, ErrorCode.upstreamUnavailable, `upstream ${ctx.source.name} is not connected`);
    return undefined;
  }
  return { body };
}

/** What an HTTP/2 request answered before its body was read may still send, read and dropped: one default window. */
const DROP_BYTES = 64 * 1024;

/**
 * Over HTTP/2, a request answered before its body was read (a denial, a 413): what the client still sends is read
 * and dropped, so its stream ends as usual once it has sent it (Node would otherwise reset it, and some clients,
 * curl 7.88 among them, report a reset with NO_ERROR as a failure); past DROP_BYTES it is reset with NO_ERROR
 * once the answer is out (RFC 9113 §8.1: the client stops sending). Over HTTP/1.1 Node drops the rest itself.
 */
function dropRest(req: GatewayRequest, res: GatewayResponse): void {
  if (!(req instanceof Http2ServerRequest) || req.complete) return;
  const { stream } = req;
  let dropped = 0;
  const stop = () => {
    if (!stream.destroyed) stream.close(http2.constants.NGHTTP2_NO_ERROR);
  };
  const onData = (chunk: Buffer) => {
    dropped += chunk.length;
    if (dropped <= DROP_BYTES) return;
    req.off('data', onData);
    req.pause();
    if (res.writableEnded) stop();
    else res.once('finish', stop);
  };
  req.on('data', onData);
  req.resume();
}

/** An endpoint for one call or message (avoiding those tried); answers 503 itself when none can take it. */
function pickOrAnswer(res: GatewayResponse, ctx: GatewayContext, tried?: Set<string>): Lease | undefined {
  const held = lease(ctx.source, tried);
  if (!held) {
    sendError(
      res,
      503,
      ErrorCode.upstreamUnavailable,
      `no endpoint of upstream ${ctx.source.name} can take it`,
    );
  }
  return held;
}

/** `POST /rpc/<method>`: 200 with the result; 404 no such method; 502 remote error; 503 down; 504 timeout. */
export async function handleRpc(
  req: GatewayRequest,
  res: GatewayResponse,
  ctx: GatewayContext,
): Promise<void> {
  const method = pathName(req.url ?? '', '/rpc/');
  if (!method)
    return sendError(res, 404, ErrorCode.noSuchMethod, 'no method named in the path /rpc/<method>');
  const ready = await prepare(req, res, ctx, { point: 'rpc', method, path: req.url ?? '' });
  if (!ready) return;
  const held = pickOrAnswer(res, ctx);
  if (!held) return;
  const label = held.end.remoteMethods.has(method) ? method : 'unknown';
  const stop = ctx.metrics.rpcDuration.startTimer({ direction: ctx.direction, method: label });
  let outcome = 'ok';
  const t0 = performance.now();
  try {
    const custom = customCarrier(headerCarrier(req.headers));
    const result = await held.end.call(method, ready.body, { timeout: ctx.timeoutMs, custom });
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': result.data.length });
    res.end(result.data);
  } catch (err) {
    if (err instanceof NoSuchMethodError) {
      outcome = 'no_such_method';
      sendError(res, 404, ErrorCode.noSuchMethod, `no such method "${method}"`);
    } else if (err instanceof RemoteError) {
      outcome = 'remote_error';
      sendError(res, 502, ErrorCode.remoteError, err.message);
    } else {
      const f = classify(err);
      outcome = f.status === 504 ? 'timeout' : 'unavailable';
      sendError(res, f.status, f.code, f.message);
    }
  } finally {
    // The endpoint answered (a result, or the service's own error) or it failed (unavailable, timed out).
    const ms = performance.now() - t0;
    held.done(outcome === 'timeout' || outcome === 'unavailable' ? { ok: false, ms } : { ok: true, ms });
    stop();
    ctx.metrics.rpcCalls.inc({ direction: ctx.direction, method: label, outcome });
  }
}

/** `POST /publish/<topic>`: 202 once the receiver acknowledged; 502 with its error text; 503 down; 504 timeout. */
export async function handlePublish(
  req: GatewayRequest,
  res: GatewayResponse,
  ctx: GatewayContext,
): Promise<void> {
  const topic = pathName(req.url ?? '', '/publish/');
  if (!topic) return sendError(res, 404, ErrorCode.notFound, 'no topic named in the path /publish/<topic>');
  const ready = await prepare(req, res, ctx, { point: 'message', topic, path: req.url ?? '' });
  if (!ready) return;
  // At-least-once across endpoints: a message whose endpoint went before it was acknowledged (the connection
  // closed, or the endpoint is no longer connected when its wait ends) is published again on another endpoint.
  // The receiver's per-ClientID dedup covers one endpoint only, so a message may arrive twice in that case.
  const tried = new Set<string>();
  let outcome = 'acked';
  // Before an answer, 'close' means the client went away: nothing is published again for it.
  let clientGone = false;
  res.once('close', () => {
    clientGone = true;
  });
  const custom = customCarrier(headerCarrier(req.headers));
  ctx.metrics.messagesInFlight.inc({ direction: 'outbound' });
  for (;;) {
    const held = pickOrAnswer(res, ctx, tried); // none left: 503
    if (!held) {
      outcome = 'unavailable';
      break;
    }
    tried.add(held.key);
    const t0 = performance.now();
    try {
      await held.end.publish(ready.body, { topic, timeout: ctx.timeoutMs, custom });
      held.done({ ok: true, ms: performance.now() - t0 });
      const body = JSON.stringify({ status: 'acked', topic });
      res.writeHead(202, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
      res.end(body);
      outcome = 'acked';
      break;
    } catch (err) {
      if (err instanceof RemoteError) {
        held.done({ ok: true, ms: performance.now() - t0 });
        outcome = 'rejected';
        sendError(res, 502, ErrorCode.remoteError, err.message);
        break;
      }
      held.done({ ok: false, ms: performance.now() - t0 });
      const f = classify(err);
      const endpointGone = held.current() !== held.end;
      if ((f.status === 503 || endpointGone) && !clientGone) {
        ctx.logger.warn(
          { endpoint: held.endpoint, topic, err: (err as Error).message },
          'republishing on another endpoint',
        );
        ctx.metrics.messages.inc({ direction: 'outbound', listener: ctx.listener, outcome: 'republished' });
        continue;
      }
      outcome = f.status === 504 ? 'timeout' : 'unavailable';
      sendError(res, f.status, f.code, f.message);
      break;
    }
  }
  ctx.metrics.messagesInFlight.dec({ direction: 'outbound' });
  ctx.metrics.messages.inc({ direction: 'outbound', listener: ctx.listener, outcome });
}
