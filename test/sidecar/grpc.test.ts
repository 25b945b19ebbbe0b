/**
 * HTTP/2 and gRPC through two sidecars (issue 16): a real @grpc/grpc-js client on the outbound listener (h2c with
 * prior knowledge on the HTTP/1.1 port), a real grpc-js server behind the inbound sidecar (an `h2c://` target).
 */
import { execFile } from 'node:child_process';
import http2 from 'node:http2';
import { promisify } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Hook } from '../../sidecar/policy/hooks.js';
import {
  clientMeta,
  type EchoClient,
  type EchoServer,
  echoClient,
  startEchoServer,
  unary,
} from './grpc-helpers.js';
import {
  type App,
  eventually,
  MiB,
  memoryLogger,
  metricValue,
  type Pair,
  startApp,
  startPair,
} from './helpers.js';

const exec = promisify(execFile);

let app: App;
let echo: EchoServer;
let pair: Pair;
let client: EchoClient;
const inboundLog = memoryLogger();

// Per gRPC method allow/deny by :path, as a plugin would do it.
const denyHook: Hook = (point, facts) =>
  point === 'request' && facts.path === '/test.Echo/Forbidden'
    ? { allow: false, reason: 'method not allowed', status: 403 }
    : undefined;

beforeAll(async () => {
  app = await startApp(1024);
  echo = await startEchoServer();
  pair = await startPair(app, undefined, {
    services: {
      grpc: { target: `h2c://127.0.0.1:${echo.port}` },
      app: { target: app.url },
    },
    inboundLogger: inboundLog.logger,
    outboundHooks: [denyHook],
    outbound: {
      outbound: {
        http: [
          { name: 'web', listen: '127.0.0.1:0', upstream: 'up', service: 'grpc' },
          { name: 'plain', listen: '127.0.0.1:0', upstream: 'up', service: 'app' },
        ],
        tcp: [],
      },
    },
  });
  client = echoClient(Number(new URL(pair.web).port));
}, 30_000);

afterAll(async () => {
  client?.close();
  await pair?.close();
  await echo?.close();
  await app?.close();
});

function plainPort(): number {
  const l = pair.outbound.listeners.get('plain')!.listener as { address: () => { port: number } };
  return l.address().port;
}

describe('gRPC through two sidecars (grpc-js client and server)', () => {
  it('unary: the answer, head metadata both ways and a custom trailer', async () => {
    const r = await unary(client, 'unary', Buffer.from('hello'));
    expect(r.value.toString()).toBe('hello');
    expect(r.head.get('x-echo-client')).toEqual(['c1']);
    expect(r.status.code).toBe(grpc.status.OK);
    expect(r.status.metadata.get('x-trailer')).toEqual(['bye']);
  });

  it('an error with details and trailer metadata reaches the client', async () => {
    const err = (await unary(client, 'unary', Buffer.from('fail')).catch(
      (e: unknown) => e,
    )) as grpc.ServiceError;
    expect(err.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(err.details).toBe('bad request: fail');
    expect(err.metadata.get('x-error-detail')).toEqual(['the detail']);
  });
});
