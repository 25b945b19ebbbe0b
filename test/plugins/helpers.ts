/**
 * Fixtures for the authorization plugin tests: plugin files written to a temp dir, an inbound sidecar with plugins
 * in front of the test app, and raw HTTP over a geminio stream (so a test controls exactly which stream carries
 * which request).
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { End, Stream } from '../../sdk/index.js';
import { parseConfig, withConfigDir } from '../../sidecar/config/load.js';
import { Sidecar } from '../../sidecar/main.js';
import type { Logger } from '../../sidecar/observe/logger.js';
import { streamMeta } from '../../sidecar/proxy/stream-meta.js';
import { type App, quiet } from '../sidecar/helpers.js';

/** The plugin API source, for plugin files written by tests (a deployed plugin imports 'geminio/plugins'). */
export const PLUGIN_API = fileURLToPath(new URL('../../plugins/index.ts', import.meta.url));

export function tempDir(): string {
  return mkdtempSync(path.join(os.tmpdir(), 'geminio-plugins-'));
}

/** Writes a plugin file `file` in `dir` whose body may use allow, deny and definePlugin; returns its path. */
export function writePlugin(dir: string, file: string, body: string): string {
  const p = path.join(dir, file);
  writeFileSync(p, `import { allow, definePlugin, deny } from ${JSON.stringify(PLUGIN_API)};\n${body}\n`);
  return p;
}

export interface InboundOptions {
  plugins: Array<{ path: string; options?: Record<string, unknown>; timeoutMs?: number }>;
  inbound?: Record<string, unknown>;
  configDir?: string;
  logger?: Logger;
}

/** An inbound sidecar with `plugins` in front of `app` (service "app"), RPC `time` and the message webhook. */
export async function startInbound(app: App, o: InboundOptions): Promise<Sidecar> {
  const config = parseConfig({
    name: 'inbound',
    log: { level: o.logger ? 'info' : 'silent' },
    admin: { listen: '127.0.0.1:0' },
    inbound: {
      listen: '127.0.0.1:0',
      rpc: { time: { url: `${app.url}/time` } },
      messages: { webhook: `${app.url}/webhook` },
      ...o.inbound,
    },
    services: { app: { target: app.url, headersTimeoutMs: 5_000 } },
    plugins: o.plugins,
  });
  const sidecar = new Sidecar(withConfigDir(config, o.configDir ?? process.cwd()), {
    logger: o.logger ?? quiet(),
  });
  await sidecar.start();
  return sidecar;
}

export function geminioAddress(s: Sidecar): string {
  return `127.0.0.1:${s.inbound!.address()!.port}`;
}

/** Opens an HTTP stream to service `app` on `end`. */
export function httpStream(end: End, service = 'app'): Promise<Stream> {
  return end.openStream({ meta: streamMeta(service, 'http') });
}

export interface RawResponse {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/**
 * Writes raw HTTP/1.1 requests on a stream (all at once: pipelined) and reads that many responses (bodies framed
 * by content-length). Resolves with fewer when the stream closes first.
 */
export async function exchange(stream: Stream, requests: string[]): Promise<RawResponse[]> {
  let buf = Buffer.alloc(0);
  const out: RawResponse[] = [];
  return new Promise((resolve) => {
    const done = () => {
      stream.off('data', onData);
      resolve(out);
    };
    const onData = (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      for (;;) {
        const headEnd = buf.indexOf('\r\n\r\n');
        if (headEnd < 0) return;
        const lines = buf.subarray(0, headEnd).toString('latin1').split('\r\n');
        const headers: Record<string, string> = {};
        for (const l of lines.slice(1)) {
          const i = l.indexOf(':');
          headers[l.slice(0, i).toLowerCase()] = l.slice(i + 1).trim();
        }
        const body = readBody(buf.subarray(headEnd + 4), headers);
        if (!body) return;
        out.push({ status: Number(lines[0]!.split(' ')[1]), headers, body: body.text });
        buf = buf.subarray(headEnd + 4 + body.used);
        if (out.length === requests.length) return done();
      }
    };
    stream.on('data', onData);
    stream.once('close', done);
    stream.once('end', done);
    stream.on('error', () => {});
    stream.write(requests.join(''));
  });
}

/** A body framed by content-length or chunked; undefined until complete. */
function readBody(b: Buffer, headers: Record<string, string>): { text: string; used: number } | undefined {
  if (headers['transfer-encoding'] !== 'chunked') {
    const len = Number(headers['content-length'] ?? 0);
    return b.length < len ? undefined : { text: b.subarray(0, len).toString(), used: len };
  }
  let at = 0;
  let text = '';
  for (;;) {
    const eol = b.indexOf('\r\n', at);
    if (eol < 0) return undefined;
    const size = Number.parseInt(b.subarray(at, eol).toString(), 16);
    if (b.length < eol + 2 + size + 2) return undefined;
    text += b.subarray(eol + 2, eol + 2 + size).toString();
    at = eol + 2 + size + 2;
    if (size === 0) return { text, used: at };
  }
}

/** A raw GET (or another method) request. */
export function get(pathname: string, method = 'GET', extra = ''): string {
  return `${method} ${pathname} HTTP/1.1\r\nhost: app\r\ncontent-length: 0\r\n${extra}\r\n`;
}

/** Resolves when the stream closes; true if it closed without delivering any data. */
export function closesEmpty(stream: Stream): Promise<boolean> {
  return new Promise((resolve) => {
    let got = false;
    stream.on('data', () => {
      got = true;
    });
    stream.on('error', () => {});
    stream.once('close', () => resolve(!got));
  });
}

/** An outbound sidecar whose HTTP listener "web" reaches service "app" over upstream "up" (with `upstream` keys). */
export async function startOutbound(
  geminio: string,
  upstream: Record<string, unknown> = {},
  wait = true,
): Promise<{ sidecar: Sidecar; web: string }> {
  const sidecar = new Sidecar(
    parseConfig({
      name: 'outbound',
      log: { level: 'silent' },
      admin: { listen: '127.0.0.1:0' },
      upstreams: { up: { address: geminio, reconnect: { minDelayMs: 20, maxDelayMs: 200 }, ...upstream } },
      outbound: { http: [{ name: 'web', listen: '127.0.0.1:0', upstream: 'up', service: 'app' }] },
    }),
    { logger: quiet() },
  );
  await sidecar.start();
  if (wait) await sidecar.upstreams.get('up')!.waitConnected();
  const web = sidecar.listeners.get('web')!.listener.address().port;
  return { sidecar, web: `http://127.0.0.1:${web}` };
}
