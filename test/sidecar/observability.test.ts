/**
 * What an operator sees of HTTP exchanges through two real sidecars: request IDs kept or made and passed on,
 * access lines with every field (query strings redacted, level names), lines and counts for requests the parser
 * refuses, and the metrics with their labels (status class, service, upstream, in-flight, connections, sizes,
 * build info).
 */
import http from 'node:http';
import type net from 'node:net';
import { connect } from 'node:net';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually } from '../helpers/wait.js';
import { type App, memoryLogger, metricValue, type Pair, startPair } from './helpers.js';

/** An app that answers with the headers it got. */
async function startHeaderApp(): Promise<{
  app: App;
  seen: http.IncomingHttpHeaders[];
  close: () => Promise<void>;
}> {
  const seen: http.IncomingHttpHeaders[] = [];
  const server = http.createServer((req, res) => {
    seen.push(req.headers);
    req.resume();
    req.on('end', () => {
      const body = JSON.stringify({ requestId: req.headers['x-request-id'] ?? null });
      res.writeHead(req.url?.startsWith('/missing') ? 404 : 200, { 'content-type': 'application/json' });
      res.end(body);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as net.AddressInfo).port;
  return {
    app: { url: `http://127.0.0.1:${port}` } as App,
    seen,
    close: async () => {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    },
  };
}

describe('observability of HTTP exchanges', () => {
  let pair: Pair;
  let app: Awaited<ReturnType<typeof startHeaderApp>>;
  const out = memoryLogger('info');
  const inb = memoryLogger('info');

  beforeAll(async () => {
    app = await startHeaderApp();
    pair = await startPair(app.app, undefined, {
      outboundLogger: out.logger,
      inboundLogger: inb.logger,
      inbound: { log: { level: 'info' } },
    });
  });
  afterAll(async () => {
    await pair?.close();
    await app?.close();
  });

  it('x-request-id: a new one is made, passed to the app and back to the client; a sent one is kept', async () => {
    const res = await request(`${pair.web}/a?token=secret`, { headers: { 'user-agent': 'obs-test/1' } });
    const body = (await res.body.json()) as { requestId: string };
    expect(body.requestId).toMatch(/^[0-9a-f-]{36}$/);
    expect(res.headers['x-request-id']).toBe(body.requestId);

    const kept = await request(`${pair.web}/b`, { headers: { 'x-request-id': 'abc-123' } });
    expect(((await kept.body.json()) as { requestId: string }).requestId).toBe('abc-123');
    expect(kept.headers['x-request-id']).toBe('abc-123');

    // Both sidecars log the exchange with the same ID; the query string is redacted; levels are names.
    const id = body.requestId;
    const outLine = await eventually(() => out.lines.find((l) => l.msg === 'access' && l.requestId === id));
    const inLine = await eventually(() => inb.lines.find((l) => l.msg === 'access' && l.requestId === id));
    expect(outLine).toMatchObject({
      level: 'info',
      listener: 'web',
      direction: 'outbound',
      service: 'app',
      upstream: 'up',
      method: 'GET',
      path: '/a?REDACTED',
      status: 200,
      peer: '127.0.0.1',
      userAgent: 'obs-test/1',
      bytesIn: 0,
      bytesOut: Buffer.byteLength(JSON.stringify({ requestId: id })),
      completed: true,
    });
    expect(String(outLine!.host)).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(inLine).toMatchObject({ level: 'info', listener: 'inbound', service: 'app', path: '/a?REDACTED' });
    expect(JSON.stringify([...out.lines, ...inb.lines])).not.toContain('secret');
  });

  it('metrics: status class, service and upstream labels, sizes, in-flight and connection gauges, build info', async () => {
    const body = Buffer.alloc(3000, 'x');
    const res = await request(`${pair.web}/missing`, { method: 'POST', body });
    expect(res.statusCode).toBe(404);
    await res.body.text();
    const text = await pair.outbound.metrics.registry.metrics();
    expect(text).toMatch(
      /geminio_http_requests_total\{listener="web",service="app",upstream="up",method="POST",status="404",status_class="4xx"\} 1/,
    );
    expect(text).toMatch(
      /geminio_http_request_duration_seconds_count\{listener="web",service="app",upstream="up",method="POST",status_class="4xx"\} 1/,
    );
    const inText = await pair.inbound.metrics.registry.metrics();
    expect(inText).toMatch(
      /geminio_http_requests_total\{listener="inbound",service="app",upstream="127\.0\.0\.1:\d+",method="POST",status="404",status_class="4xx"\} 1/,
    );
    // The 3000-byte body is the one request between the 1024 and 4096 buckets (the GETs before it had none).
    const bucket = (le: string) =>
      Number(
        new RegExp(
          `geminio_http_request_size_bytes_bucket\\{le="${le}",listener="web",service="app"\\} (\\d+)`,
        ).exec(text)?.[1],
      );
    expect(bucket('4096') - bucket('1024')).toBe(1);
    expect(bucket('1024')).toBe(bucket('0'));
    const responded = /geminio_http_response_size_bytes_sum\{listener="web",service="app"\} (\d+)/.exec(text);
    expect(Number(responded?.[1])).toBeGreaterThan(0);
    await eventually(
      async () =>
        (await metricValue(pair.outbound, 'geminio_http_requests_in_flight', { listener: 'web' })) === 0,
    );
    // The undici client keeps its connection: one open on the outbound listener, one stream on the inbound side.
    expect(
      await metricValue(pair.outbound, 'geminio_http_connections_open', { listener: 'web' }),
    ).toBeGreaterThan(0);
    expect(
      await metricValue(pair.inbound, 'geminio_http_connections_open', { listener: 'inbound' }),
    ).toBeGreaterThan(0);
    expect(text).toMatch(/geminio_sidecar_build_info\{version="\d+\.\d+\.\d+[^"]*",node="\d+\.\d+\.\d+"\} 1/);
    expect(text).not.toContain('inbound:app');
  });

  it('a request the parser refuses gets an access line and is counted', async () => {
    const port = Number(new URL(pair.web).port);
    const answer = await new Promise<string>((resolve) => {
      const s = connect(port, '127.0.0.1', () => s.write('GET /x HTTP/1.1\r\nHost: a\r\nBad Header\r\n\r\n'));
      let got = '';
      s.on('data', (d) => (got += d));
      s.on('close', () => resolve(got));
      s.on('error', () => resolve(got));
    });
    expect(answer).toMatch(/^HTTP\/1\.1 400/);
    const line = await eventually(() => out.lines.find((l) => l.msg === 'access' && l.refused !== undefined));
    expect(line).toMatchObject({
      level: 'info',
      listener: 'web',
      status: 400,
      completed: false,
      peer: '127.0.0.1',
    });
    expect(out.lines.some((l) => l.msg === 'bad request refused' && l.level === 'warn')).toBe(true);
    expect(
      await metricValue(pair.outbound, 'geminio_http_requests_total', { listener: 'web', status: '400' }),
    ).toBe(1);
  });
});

describe('accessLog config', () => {
  let pair: Pair;
  let app: Awaited<ReturnType<typeof startHeaderApp>>;
  const out = memoryLogger('info');

  beforeAll(async () => {
    app = await startHeaderApp();
    pair = await startPair(app.app, undefined, {
      outboundLogger: out.logger,
      outbound: { accessLog: { fields: ['requestId'], redactQuery: false, sampleRatio: 0 } },
    });
  });
  afterAll(async () => {
    await pair?.close();
    await app?.close();
  });

  it('fields pick what is written, redactQuery false keeps queries, sampling 0 keeps only errors', async () => {
    for (const path of ['/ok?q=1', '/missing?q=2']) await (await request(`${pair.web}${path}`)).body.text();
    const line = await eventually(() => out.lines.find((l) => l.msg === 'access'));
    // Only the error was logged (sampleRatio 0), with its query, and only the fields asked for plus the fixed ones.
    expect(out.lines.filter((l) => l.msg === 'access')).toHaveLength(1);
    expect(line).toMatchObject({ path: '/missing?q=2', status: 404, method: 'GET' });
    expect(Object.keys(line!).sort()).toEqual(
      ['durationMs', 'level', 'method', 'msg', 'path', 'pid', 'requestId', 'status', 'time'].sort(),
    );
  });
});
