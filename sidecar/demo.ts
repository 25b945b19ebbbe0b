/**
 * `geminio-sidecar demo`: one process with a sample HTTP app (plus a TCP echo server), an inbound sidecar in front
 * of them and an outbound sidecar dialling it, all on loopback, and the commands to try. The ports are fixed,
 * documented defaults that flags can change.
 */
import http from 'node:http';
import net from 'node:net';
import { parseConfig } from './config/load.js';
import { Sidecar } from './main.js';
import { listenOn } from './net/listen.js';
import { createLogger, loadPretty } from './observe/logger.js';

export interface DemoPorts {
  host: string;
  /** Outbound HTTP listener (where you send requests). Default 8080. */
  http: number;
  /** Outbound TCP listener (to the echo server). Default 9000. */
  tcp: number;
  /** The inbound sidecar's geminio listener. Default 7001. */
  geminio: number;
  /** The outbound sidecar's admin listener (/metrics). Default 9901. */
  admin: number;
  /** The inbound sidecar's admin listener. Default 9902. */
  inboundAdmin: number;
  /** The sample HTTP app. Default 3000. */
  app: number;
  /** The sample TCP echo server. Default 3001. */
  echo: number;
}

export const DEMO_PORTS: DemoPorts = {
  host: '127.0.0.1',
  http: 8080,
  tcp: 9000,
  geminio: 7001,
  admin: 9901,
  inboundAdmin: 9902,
  app: 3000,
  echo: 3001,
};

/** The sample app: GET / says hello, POST /echo streams the body back, POST /time and POST /webhook. */
function sampleApp(say: (line: string) => void): http.Server {
  return http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method === 'POST' && path === '/echo') {
      res.writeHead(200, { 'content-type': req.headers['content-type'] ?? 'application/octet-stream' });
      req.pipe(res);
      return;
    }
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      if (req.method === 'POST' && path === '/time') {
        res.end(`${new Date().toISOString()}${body ? ` (you sent: ${body})` : ''}\n`);
      } else if (req.method === 'POST' && path === '/webhook') {
        say(
          `[sample app] webhook: topic=${req.headers['x-geminio-topic'] ?? ''} body=${JSON.stringify(body)}`,
        );
        res.end('ok');
      } else if (path === '/') {
        res.writeHead(200, { 'content-type': 'application/json' });
        const from = req.headers['x-geminio-client-id'];
        res.end(
          `${JSON.stringify({ hello: 'from the sample app behind the inbound sidecar', clientId: from })}\n`,
        );
      } else {
        res.writeHead(404, { 'content-type': 'application/json' });
        res.end('{"error":"not found"}\n');
      }
    });
  });
}

/** Starts the demo; resolves once the outbound sidecar is connected. */
export async function startDemo(
  ports: DemoPorts,
  options: { logLevel?: string; say?: (line: string) => void } = {},
): Promise<{ stop: () => Promise<void>; commands: string[] }> {
  const say = options.say ?? ((line: string) => process.stdout.write(`${line}\n`));
  const h = ports.host;
  const app = sampleApp(say);
  const echo = net.createServer({ allowHalfOpen: true }, (s) => s.pipe(s));
  await listenOn(app, `${h}:${ports.app}`);
  await listenOn(echo, `${h}:${ports.echo}`);
  const log = { level: options.logLevel ?? 'info', format: 'auto' as const };
  await loadPretty(log);
  const logger = createLogger(log);
  const inbound = new Sidecar(
    parseConfig({
      name: 'demo-inbound',
      log,
      admin: { listen: `${h}:${ports.inboundAdmin}` },
      inbound: {
        listen: `${h}:${ports.geminio}`,
        rpc: { time: { url: `http://${h}:${ports.app}/time` } },
        messages: { webhook: `http://${h}:${ports.app}/webhook` },
      },
      services: { app: { target: `http://${h}:${ports.app}` }, echo: { target: `tcp://${h}:${ports.echo}` } },
    }),
    { logger: logger.child({ side: 'inbound' }) },
  );
  const outbound = new Sidecar(
    parseConfig({
      name: 'demo-outbound',
      log,
      admin: { listen: `${h}:${ports.admin}` },
      upstreams: { inbound: { address: `${h}:${ports.geminio}` } },
      outbound: {
        http: [{ name: 'web', listen: `${h}:${ports.http}`, upstream: 'inbound', service: 'app' }],
        tcp: [{ name: 'echo', listen: `${h}:${ports.tcp}`, upstream: 'inbound', service: 'echo' }],
      },
    }),
    { logger: logger.child({ side: 'outbound' }) },
  );
  await inbound.start();
  await outbound.start();
  await outbound.upstreams.get('inbound')!.waitConnected();
  const commands = [
    `curl http://${h}:${ports.http}/`,
    `curl -X POST --data-binary 'hello through geminio' http://${h}:${ports.http}/echo`,
    `curl -X POST -d 'ping' http://${h}:${ports.http}/rpc/time`,
    `curl -X POST -d 'hello subscribers' http://${h}:${ports.http}/publish/news`,
    `nc ${h} ${ports.tcp}`,
    `curl http://${h}:${ports.admin}/metrics`,
  ];
  const stop = async () => {
    await outbound.shutdown(2_000);
    await inbound.shutdown(2_000);
    app.closeAllConnections();
    app.close();
    echo.close();
  };
  return { stop, commands };
}

/** What the demo prints: where things run and the commands to try. */
export function demoGuide(ports: DemoPorts, commands: string[]): string {
  const notes = [
    'GET through the outbound -> inbound sidecars to the app',
    'a streamed body, echoed back',
    'RPC gateway: calls method "time" registered by the inbound sidecar',
    "an acknowledged message, delivered to the app's webhook",
    'TCP through a stream: type a line, it comes back',
    'Prometheus metrics of the outbound sidecar',
  ];
  return [
    '',
    'geminio sidecar demo is running:',
    `  sample app ${ports.host}:${ports.app} and TCP echo ${ports.host}:${ports.echo}`,
    `  <- inbound sidecar (geminio ${ports.host}:${ports.geminio}, admin ${ports.host}:${ports.inboundAdmin})`,
    `  <- outbound sidecar (HTTP ${ports.host}:${ports.http}, TCP ${ports.host}:${ports.tcp}, admin ${ports.host}:${ports.admin})`,
    '',
    'Try:',
    ...commands.flatMap((c, i) => [`  # ${notes[i] ?? ''}`, `  ${c}`]),
    '',
    'Ctrl-C to stop.',
    '',
  ].join('\n');
}
