/**
 * Tracing against a real backend: Jaeger (built from the Go module proxy by test/deploy/install-tools.sh into
 * /var/cache/geminio-ci/bin), in-memory storage, its OTLP/HTTP receiver and query API on free ports. A request
 * with a caller's traceparent goes through two sidecars to an app; Jaeger's API must show one trace with the
 * server and client spans of both sidecars, each the child of the one before, and the app must get the context of
 * the last one. RPC gateway calls and published messages carry the context across the geminio hop in `custom`.
 * And an export backend that is down costs the spans only (counted), not the requests.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Metadata } from '@grpc/grpc-js';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually } from '../helpers/wait.js';
import { echoClient, startEchoServer } from './grpc-helpers.js';
import { type App, metricValue, type Pair, startPair, startTcpEcho } from './helpers.js';

const JAEGER = path.join(process.env.GEMINIO_CI_CACHE ?? '/var/cache/geminio-ci', 'bin', 'jaeger');
const haveJaeger = existsSync(JAEGER);

async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address() as net.AddressInfo;
  await new Promise((r) => s.close(r));
  return port;
}

interface JaegerSpan {
  traceID: string;
  spanID: string;
  operationName: string;
  processID: string;
  references: Array<{ refType: string; traceID: string; spanID: string }>;
  tags: Array<{ key: string; value: unknown }>;
}
interface JaegerTrace {
  traceID: string;
  spans: JaegerSpan[];
  processes: Record<string, { serviceName: string }>;
}

async function startJaeger(): Promise<{ otlp: string; query: string; stop: () => Promise<void> }> {
  const [otlpPort, queryPort, grpcPort, healthPort] = [
    await freePort(),
    await freePort(),
    await freePort(),
    await freePort(),
  ];
  const dir = mkdtempSync(path.join(os.tmpdir(), 'jaeger-'));
  const config = path.join(dir, 'config.yaml');
  writeFileSync(
    config,
    `service:
  extensions: [jaeger_storage, jaeger_query, healthcheckv2]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
    logs:
      level: warn
extensions:
  healthcheckv2:
    use_v2: true
    http:
      endpoint: 127.0.0.1:${healthPort}
  jaeger_query:
    storage:
      traces: mem
    http:
      endpoint: 127.0.0.1:${queryPort}
    grpc:
      endpoint: 127.0.0.1:${grpcPort}
  jaeger_storage:
    backends:
      mem:
        memory:
          max_traces: 10000
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:${otlpPort}
processors:
  batch:
    timeout: 100ms
exporters:
  jaeger_storage_exporter:
    trace_storage: mem
`,
  );
  const child: ChildProcess = spawn(JAEGER, ['--config', config], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (d) => {
    stderr = (stderr + d).slice(-4000);
  });
  const query = `http://127.0.0.1:${queryPort}`;
  await eventually(
    async () => {
      if (child.exitCode !== null) throw new Error(`jaeger exited: ${stderr}`);
      const ok = await fetch(`${query}/api/services`).then(
        (r) => r.ok,
        () => false,
      );
      const receiving = await fetch(`http://127.0.0.1:${otlpPort}/v1/traces`, { method: 'POST' }).then(
        () => true,
        () => false,
      );
      return ok && receiving;
    },
    60_000,
    'jaeger up',
  );
  return {
    otlp: `http://127.0.0.1:${otlpPort}/v1/traces`,
    query,
    stop: async () => {
      child.kill('SIGTERM');
      await new Promise((r) => (child.exitCode !== null ? r(undefined) : child.once('exit', r)));
    },
  };
}

/** An app that records the traceparent it gets, with an RPC endpoint and a message webhook. */
async function startTracedApp(): Promise<{
  app: App;
  seen: Map<string, string>;
  close: () => Promise<void>;
}> {
  const seen = new Map<string, string>();
  const server = http.createServer((req, res) => {
    seen.set(req.url ?? '', String(req.headers.traceparent ?? ''));
    req.resume();
    req.on('end', () => res.end('ok'));
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

const tracing = (endpoint: string, serviceName: string) => ({
  tracing: { enabled: true, endpoint, serviceName, scheduledDelayMs: 50, exportTimeoutMs: 2_000 },
});

// Without the Jaeger binary (test/deploy/install-tools.sh builds it) the suite cannot run; in CI it must.
describe.skipIf(!haveJaeger && !process.env.CI)('tracing through two sidecars, seen in Jaeger', () => {
  let jaeger: Awaited<ReturnType<typeof startJaeger>>;
  let app: Awaited<ReturnType<typeof startTracedApp>>;
  let pair: Pair;
  let echo: Awaited<ReturnType<typeof startTcpEcho>>;

  beforeAll(async () => {
    jaeger = await startJaeger();
    app = await startTracedApp();
    echo = await startTcpEcho();
    pair = await startPair(app.app, echo.port, {
      outbound: tracing(jaeger.otlp, 'edge'),
      inbound: tracing(jaeger.otlp, 'core'),
      inboundSection: {
        rpc: { hello: { url: `${app.app.url}/hello` } },
        messages: { webhook: `${app.app.url}/hook` },
      },
    });
  }, 120_000);
  afterAll(async () => {
    await pair?.close();
    await app?.close();
    await echo?.close();
    await jaeger?.stop();
  });

  async function trace(traceId: string, minSpans: number): Promise<JaegerTrace> {
    const found = await eventually(
      async () => {
        const r = await fetch(`${jaeger.query}/api/traces/${traceId}`);
        if (!r.ok) return undefined;
        const t = ((await r.json()) as { data: JaegerTrace[] }).data[0];
        return t && t.spans.length >= minSpans ? t : undefined;
      },
      30_000,
      `trace ${traceId} in jaeger`,
    );
    return found!;
  }

  const parentOf = (s: JaegerSpan) => s.references.find((r) => r.refType === 'CHILD_OF')?.spanID;
  const service = (t: JaegerTrace, s: JaegerSpan) => t.processes[s.processID]?.serviceName;
  const tag = (s: JaegerSpan, key: string) => s.tags.find((t) => t.key === key)?.value;

  it('HTTP: one trace, server and client spans on each sidecar, each the child of the one before', async () => {
    const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
    const callerSpan = '00f067aa0ba902b7';
    const res = await request(`${pair.web}/orders?token=x`, {
      headers: {
        traceparent: `00-${traceId}-${callerSpan}-01`,
        tracestate: 'vendor=abc',
        'x-request-id': 'rid-1',
      },
    });
    expect(res.statusCode).toBe(200);
    await res.body.text();
    const t = await trace(traceId, 4);
    expect(t.spans).toHaveLength(4);
    const kind = (s: JaegerSpan) => tag(s, 'span.kind');
    const edgeServer = t.spans.find((s) => service(t, s) === 'edge' && kind(s) === 'server')!;
    const edgeClient = t.spans.find((s) => service(t, s) === 'edge' && kind(s) === 'client')!;
    const coreServer = t.spans.find((s) => service(t, s) === 'core' && kind(s) === 'server')!;
    const coreClient = t.spans.find((s) => service(t, s) === 'core' && kind(s) === 'client')!;
    expect([edgeServer, edgeClient, coreServer, coreClient].every(Boolean)).toBe(true);
    expect(parentOf(edgeServer)).toBe(callerSpan);
    expect(parentOf(edgeClient)).toBe(edgeServer.spanID);
    expect(parentOf(coreServer)).toBe(edgeClient.spanID);
    expect(parentOf(coreClient)).toBe(coreServer.spanID);
    // The app got the context of the last span, with the caller's tracestate.
    expect(app.seen.get('/orders?token=x')).toBe(`00-${traceId}-${coreClient.spanID}-01`);
    // The attributes an operator searches by.
    expect(tag(edgeServer, 'geminio.service')).toBe('app');
    expect(tag(edgeServer, 'geminio.upstream')).toBe('up');
    expect(tag(edgeServer, 'geminio.request_id')).toBe('rid-1');
    expect(tag(edgeServer, 'http.response.status_code')).toBe(200);
    expect(tag(edgeServer, 'url.path')).toBe('/orders?REDACTED');
    expect(tag(coreServer, 'geminio.client_id')).toMatch(/^\d+$/);
    expect(tag(coreServer, 'geminio.stream_id')).toMatch(/^\d+$/);
    expect(tag(coreServer, 'geminio.authz.decision')).toBe('allow');
    expect(await metricValue(pair.outbound, 'geminio_trace_spans_exported_total')).toBeGreaterThanOrEqual(2);
  });

  it('RPC and messages: the context crosses the geminio hop in custom', async () => {
    const rpcTrace = 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa1';
    const msgTrace = 'bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb2';
    const call = await request(`${pair.web}/rpc/hello`, {
      method: 'POST',
      body: 'hi',
      headers: { traceparent: `00-${rpcTrace}-1111111111111111-01` },
    });
    expect(call.statusCode).toBe(200);
    await call.body.text();
    const pub = await request(`${pair.web}/publish/orders`, {
      method: 'POST',
      body: 'm',
      headers: { traceparent: `00-${msgTrace}-2222222222222222-01` },
    });
    expect(pub.statusCode).toBe(202);
    await pub.body.text();
    for (const [id, op] of [
      [rpcTrace, 'rpc hello'],
      [msgTrace, 'message'],
    ] as const) {
      const t = await trace(id, 3);
      const edgeClient = t.spans.find((s) => service(t, s) === 'edge' && tag(s, 'span.kind') === 'client')!;
      const core = t.spans.find((s) => service(t, s) === 'core')!;
      expect(core.operationName).toBe(op);
      expect(parentOf(core)).toBe(edgeClient.spanID);
    }
    // The local endpoint and the webhook got the context of the inbound span.
    expect(app.seen.get('/hello')).toMatch(new RegExp(`^00-${rpcTrace}-[0-9a-f]{16}-01$`));
    // The gateway over HTTP/2 (h2c prior knowledge on the same port): the same spans, the same hop.
    const h2Trace = 'eeeeeeeeeeeeeeeeeeeeeeeeeeeeeee5';
    const session = http2.connect(pair.web);
    try {
      const req = session.request({
        ':method': 'POST',
        ':path': '/rpc/hello',
        traceparent: `00-${h2Trace}-5555555555555555-01`,
      });
      req.end('hi');
      const status = await new Promise<number>((r) => req.once('response', (h) => r(Number(h[':status']))));
      for await (const _ of req);
      expect(status).toBe(200);
    } finally {
      session.close();
    }
    const t = await trace(h2Trace, 3);
    const edgeServer = t.spans.find((s) => service(t, s) === 'edge' && tag(s, 'span.kind') === 'server')!;
    const edgeClient = t.spans.find((s) => service(t, s) === 'edge' && tag(s, 'span.kind') === 'client')!;
    const core = t.spans.find((s) => service(t, s) === 'core')!;
    expect(parentOf(edgeServer)).toBe('5555555555555555');
    expect(tag(edgeServer, 'network.protocol.name')).toBe('h2c');
    expect(core.operationName).toBe('rpc hello');
    expect(parentOf(core)).toBe(edgeClient.spanID);
    expect(app.seen.get('/hook')).toMatch(new RegExp(`^00-${msgTrace}-[0-9a-f]{16}-01$`));
  });

  it('gRPC (HTTP/2) through both sidecars: the same four spans, named by the method; the app gets the last', async () => {
    const echo = await startEchoServer();
    const grpcPair = await startPair(app.app, undefined, {
      services: { grpc: { target: `h2c://127.0.0.1:${echo.port}` } },
      web: { service: 'grpc' },
      outbound: tracing(jaeger.otlp, 'edge-grpc'),
      inbound: tracing(jaeger.otlp, 'core-grpc'),
    });
    const client = echoClient(Number(new URL(grpcPair.web).port));
    try {
      const traceId = 'cccccccccccccccccccccccccccccc03';
      const callerSpan = '3333333333333333';
      const md = new Metadata();
      md.set('traceparent', `00-${traceId}-${callerSpan}-01`);
      const ok = await new Promise<Buffer>((resolve, reject) =>
        (client.unary as (...a: unknown[]) => unknown)(
          Buffer.from('hi'),
          md,
          (err: Error | null, v: Buffer) => (err ? reject(err) : resolve(v)),
        ),
      );
      expect(ok.toString()).toBe('hi');
      const t = await trace(traceId, 4);
      expect(t.spans).toHaveLength(4);
      const kind = (s: JaegerSpan) => tag(s, 'span.kind');
      const find = (svc: string, k: string) => t.spans.find((s) => service(t, s) === svc && kind(s) === k)!;
      const [edgeServer, edgeClient, coreServer, coreClient] = [
        find('edge-grpc', 'server'),
        find('edge-grpc', 'client'),
        find('core-grpc', 'server'),
        find('core-grpc', 'client'),
      ];
      expect([edgeServer, edgeClient, coreServer, coreClient].every(Boolean)).toBe(true);
      expect(edgeServer.operationName).toBe('web test.Echo/Unary');
      expect(parentOf(edgeServer)).toBe(callerSpan);
      expect(parentOf(edgeClient)).toBe(edgeServer.spanID);
      expect(parentOf(coreServer)).toBe(edgeClient.spanID);
      expect(parentOf(coreClient)).toBe(coreServer.spanID);
      expect(echo.traceparents.at(-1)).toBe(`00-${traceId}-${coreClient.spanID}-01`);
      expect(tag(edgeServer, 'rpc.system')).toBe('grpc');
      expect(tag(edgeServer, 'rpc.grpc.status_code')).toBe(0);
      expect(tag(coreServer, 'geminio.authz.decision')).toBe('allow');
      expect(tag(coreServer, 'geminio.stream_id')).toMatch(/^\d+$/);

      // A failed call: INVALID_ARGUMENT is the caller's error (the span is not an error); its status is recorded.
      const failTrace = 'dddddddddddddddddddddddddddddd04';
      const md2 = new Metadata();
      md2.set('traceparent', `00-${failTrace}-4444444444444444-01`);
      const code = await new Promise<number | undefined>((resolve) =>
        (client.unary as (...a: unknown[]) => unknown)(
          Buffer.from('fail'),
          md2,
          (err: { code?: number } | null) => resolve(err?.code),
        ),
      );
      expect(code).toBe(3);
      const f = await trace(failTrace, 4);
      const fs = f.spans.find(
        (s) => f.processes[s.processID]?.serviceName === 'edge-grpc' && tag(s, 'span.kind') === 'server',
      )!;
      expect(tag(fs, 'rpc.grpc.status_code')).toBe(3);
      expect(tag(fs, 'error')).toBeUndefined();
    } finally {
      client.close();
      await grpcPair.close();
      await echo.close();
    }
  });

  it('TCP streams: one span per stream on each side, the context in the stream meta', async () => {
    await new Promise<void>((resolve, reject) => {
      const sock = net.connect(pair.tcpPort, '127.0.0.1', () => sock.write('ping'));
      sock.once('data', () => sock.end());
      sock.once('close', () => resolve());
      sock.once('error', reject);
    });
    const t = await eventually(
      async () => {
        const r = await fetch(
          `${jaeger.query}/api/traces?service=core&operation=${encodeURIComponent('stream echo')}`,
        );
        const data = ((await r.json()) as { data: JaegerTrace[] }).data;
        return data.find((x) => x.spans.length >= 2);
      },
      30_000,
      'the stream trace in jaeger',
    );
    const edge = t!.spans.find((s) => service(t!, s) === 'edge')!;
    const core = t!.spans.find((s) => service(t!, s) === 'core')!;
    expect(edge.operationName).toBe('stream echo');
    expect(tag(edge, 'span.kind')).toBe('client');
    expect(tag(core, 'span.kind')).toBe('server');
    expect(parentOf(core)).toBe(edge.spanID);
    expect(tag(core, 'geminio.stream_id')).toBe(tag(edge, 'geminio.stream_id'));
  });
});

describe('tracing with the export backend down', () => {
  let app: Awaited<ReturnType<typeof startTracedApp>>;
  let pair: Pair;

  beforeAll(async () => {
    app = await startTracedApp();
    const dead = `http://127.0.0.1:${await freePort()}/v1/traces`; // nothing listens there
    pair = await startPair(app.app, undefined, {
      outbound: { tracing: { ...tracing(dead, 'edge').tracing, exportTimeoutMs: 500 } },
    });
  });
  afterAll(async () => {
    await pair?.close();
    await app?.close();
  });

  it('requests are answered as usual; the spans are dropped and counted', async () => {
    for (let i = 0; i < 5; i++) {
      const res = await request(`${pair.web}/x${i}`);
      expect(res.statusCode).toBe(200);
      await res.body.text();
    }
    // The app still got a traceparent (the sidecar's client span), though nothing could be exported.
    expect(app.seen.get('/x0')).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);
    await eventually(
      async () =>
        (await metricValue(pair.outbound, 'geminio_trace_spans_dropped_total', {
          reason: 'export_failed',
        })) >= 10,
      30_000,
      'dropped spans counted',
    );
    expect(await metricValue(pair.outbound, 'geminio_trace_spans_exported_total')).toBe(0);
  });
});
