// What the proxy room forwards and answers (sidecar/proxy/http-util.ts): hop-by-hop headers never cross, the
// sidecar's own headers win over the client's, and each failure maps to the status nginx would give.
import type { IncomingMessage } from 'node:http';
import { describe, expect, it } from 'vitest';
import {
  classify,
  deniedCode,
  ErrorCode,
  forwardHeaders,
  hasBody,
  rawErrorResponse,
  rawRequestHead,
  responseHeaders,
} from '../../../sidecar/proxy/http-util.js';

describe('forwardHeaders', () => {
  it('drops hop-by-hop headers and the ones Connection names', () => {
    const out = forwardHeaders({
      host: 'h',
      connection: 'keep-alive, X-Secret , ,',
      'keep-alive': 'timeout=5',
      'x-secret': 'no',
      te: 'trailers',
      trailer: 'x',
      'transfer-encoding': 'chunked',
      upgrade: 'websocket',
      expect: '100-continue',
      'proxy-authorization': 'Basic x',
      accept: 'text/plain',
    });
    expect(out).toEqual({ host: 'h', accept: 'text/plain' });
  });

  it('puts the extra headers first and lets no client header replace or shadow them', () => {
    const out = forwardHeaders(
      { 'x-geminio-client-id': 'forged', 'x-geminio-other': 'forged', 'x-user': 'client', accept: '*/*' },
      { 'x-geminio-client-id': '42', 'x-user': 'plugin' },
      'x-geminio-',
    );
    expect(out).toEqual({ 'x-geminio-client-id': '42', 'x-user': 'plugin', accept: '*/*' });
    expect(Object.keys(out)[0]).toBe('x-geminio-client-id');
  });

  it('drops what a plain "keep-alive" or "close" Connection names, as any other list', () => {
    expect(forwardHeaders({ connection: 'keep-alive', 'keep-alive': 'timeout=5', a: '1' })).toEqual({
      a: '1',
    });
    expect(forwardHeaders({ connection: 'close', close: 'x', a: '1' })).toEqual({ a: '1' });
    expect(forwardHeaders({ connection: 'Close', close: 'x', a: '1' })).toEqual({ a: '1' });
  });

  it('keeps repeated headers as lists', () => {
    expect(forwardHeaders({ 'set-cookie': ['a=1', 'b=2'] })).toEqual({ 'set-cookie': ['a=1', 'b=2'] });
  });
});

describe('responseHeaders', () => {
  it('removes hop-by-hop headers whatever their case', () => {
    expect(
      responseHeaders({
        'Content-Type': 'text/plain',
        Connection: 'close',
        'Transfer-Encoding': 'chunked',
        x: undefined,
      }),
    ).toEqual({ 'Content-Type': 'text/plain' });
  });

  it('adds to the object given: its headers first, a header of the same name replaced in place', () => {
    const out = responseHeaders(
      { 'content-type': 'text/plain', 'x-request-id': 'app', connection: 'close' },
      { 'x-request-id': 'sidecar', 'x-other': '1' },
    );
    expect(out).toEqual({ 'x-request-id': 'app', 'x-other': '1', 'content-type': 'text/plain' });
    expect(Object.keys(out)).toEqual(['x-request-id', 'x-other', 'content-type']);
  });
});

describe('hasBody', () => {
  const req = (headers: Record<string, string>) => ({ headers }) as unknown as IncomingMessage;
  it('is true for a positive content-length or any transfer-encoding', () => {
    expect(hasBody(req({ 'content-length': '0' }))).toBe(false);
    expect(hasBody(req({ 'content-length': '3' }))).toBe(true);
    expect(hasBody(req({ 'transfer-encoding': 'chunked' }))).toBe(true);
    expect(hasBody(req({}))).toBe(false);
  });
});

describe('rawRequestHead', () => {
  it('replays the head with the extra headers right after the request line', () => {
    const req = {
      method: 'GET',
      url: '/ws',
      httpVersion: '1.1',
      rawHeaders: ['Host', 'h', 'X-Geminio-Client-Id', 'forged', 'Upgrade', 'websocket'],
    } as unknown as IncomingMessage;
    expect(rawRequestHead(req, { 'x-geminio-client-id': '7' }, 'x-geminio-')).toBe(
      'GET /ws HTTP/1.1\r\nx-geminio-client-id: 7\r\nHost: h\r\nUpgrade: websocket\r\n\r\n',
    );
  });
});

describe('statuses', () => {
  it('maps timeouts to 504, an unreachable far side to 503, anything else to 502', () => {
    const err = (code: string) => Object.assign(new Error(code), { code });
    expect(classify(err('UND_ERR_HEADERS_TIMEOUT'))).toMatchObject({
      status: 504,
      code: ErrorCode.upstreamTimeout,
    });
    expect(classify(err('GEMINIO_ERR_CONNECTION_CLOSED'))).toMatchObject({
      status: 503,
      code: ErrorCode.upstreamUnavailable,
    });
    expect(classify(err('ECONNREFUSED'), 'target')).toMatchObject({
      status: 503,
      code: ErrorCode.targetUnavailable,
    });
    expect(classify(err('EPIPE'))).toMatchObject({
      status: 502,
      code: ErrorCode.badGateway,
      message: 'EPIPE',
    });
    expect(classify('plain string')).toMatchObject({ status: 502, message: 'plain string' });
  });

  it('names a denial by its status', () => {
    expect(deniedCode(403)).toBe(ErrorCode.forbidden);
    expect(deniedCode(429)).toBe(ErrorCode.rateLimited);
    expect(deniedCode(503)).toBe(ErrorCode.authzUnavailable);
  });

  it('frames a raw error response with its length and connection: close', () => {
    const text = rawErrorResponse(431, 'HEADERS_TOO_LARGE', 'é');
    const [head, body] = text.split('\r\n\r\n');
    expect(head).toContain('HTTP/1.1 431 HEADERS_TOO_LARGE');
    expect(head).toContain('connection: close');
    expect(head).toContain(`content-length: ${Buffer.byteLength(body ?? '')}`);
    expect(JSON.parse(body ?? '')).toEqual({ error: 'é', code: 'HEADERS_TOO_LARGE' });
  });
});
