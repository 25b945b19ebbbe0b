/**
 * The Node reverse proxies the sidecar rows are anchored on (issue 14), one per process:
 *
 *   node --import tsx bench/http-proxy.ts '{"kind","target","connections"}'
 *
 *   minimal     node:http Server + an undici Pool to the target, each request forwarded with `Pool.stream()`
 *               (the least a Node proxy can do: hop-by-hop headers dropped, the answer written straight into
 *               the ServerResponse)
 *   http-proxy  node-http-proxy `createProxyServer({ target, agent })` with a keep-alive http.Agent, in a
 *               node:http Server
 *   fastify     fastify with `@fastify/http-proxy` (`upstream` = the target, its undici pool)
 *
 * Each keeps up to `connections` keep-alive connections to its target (the load generator's concurrency), and
 * its server keeps client connections alive 60 s, like bench/http-app.ts. Prints {"port","pid"} once
 * listening; exits when stdin closes. A proxy that cannot reach its target answers 502.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import fastifyHttpProxy from '@fastify/http-proxy';
import fastify from 'fastify';
import httpProxy from 'http-proxy';
import { Pool } from 'undici';
import { emit } from './lib.js';

export type ProxyKind = 'minimal' | 'http-proxy' | 'fastify';

interface Options {
  kind: ProxyKind;
  target: string;
  connections: number;
}

const o = JSON.parse(process.argv[2] ?? '{}') as Options;
const KEEPALIVE_MS = 60_000;

/** RFC 9110 7.6.1: connection-specific fields a proxy must not forward. */
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
]);

function minimal(): http.Server {
  const pool = new Pool(o.target, {
    connections: o.connections,
    pipelining: 1,
    keepAliveTimeout: KEEPALIVE_MS,
  });
  return http.createServer({ keepAliveTimeout: KEEPALIVE_MS }, (req, res) => {
    const headers: Record<string, string | string[]> = {};
    for (const [k, v] of Object.entries(req.headers)) {
      if (v !== undefined && !HOP_BY_HOP.has(k)) headers[k] = v;
    }
    const hasBody = req.method !== 'GET' && req.method !== 'HEAD';
    pool
      .stream(
        { path: req.url ?? '/', method: req.method ?? 'GET', headers, body: hasBody ? req : null },
        ({ statusCode, headers: answer }) => {
          const out: Record<string, string | string[]> = {};
          for (const [k, v] of Object.entries(answer)) {
            if (v !== undefined && !HOP_BY_HOP.has(k)) out[k] = v;
          }
          res.writeHead(statusCode, out);
          return res;
        },
      )
      .catch(() => {
        if (!res.headersSent) res.writeHead(502).end();
        else res.destroy();
      });
    if (!hasBody) req.resume();
  });
}

function nodeHttpProxy(): http.Server {
  const agent = new http.Agent({ keepAlive: true, maxSockets: o.connections, keepAliveMsecs: KEEPALIVE_MS });
  const proxy = httpProxy.createProxyServer({ target: o.target, agent });
  proxy.on('error', (_err, _req, res) => {
    if (res instanceof http.ServerResponse && !res.headersSent) res.writeHead(502).end();
    else res.destroy();
  });
  return http.createServer({ keepAliveTimeout: KEEPALIVE_MS }, (req, res) => proxy.web(req, res));
}

async function listen(): Promise<{ port: number; close: () => Promise<void> }> {
  if (o.kind === 'fastify') {
    const app = fastify({ logger: false, keepAliveTimeout: KEEPALIVE_MS });
    await app.register(fastifyHttpProxy, {
      upstream: o.target,
      undici: { connections: o.connections, pipelining: 1, keepAliveTimeout: KEEPALIVE_MS },
    });
    await app.listen({ host: '127.0.0.1', port: 0 });
    return { port: (app.server.address() as AddressInfo).port, close: () => app.close() };
  }
  const server = o.kind === 'minimal' ? minimal() : nodeHttpProxy();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

if (!['minimal', 'http-proxy', 'fastify'].includes(o.kind)) {
  console.error(`unknown proxy kind ${JSON.stringify(o.kind)}`);
  process.exit(2);
}
const { port, close } = await listen();
emit({ port, pid: process.pid });
process.stdin.resume();
process.stdin.on('end', () => {
  close().finally(() => process.exit(0));
});
