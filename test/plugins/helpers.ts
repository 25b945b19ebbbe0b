/**
 * Fixtures for the authorization plugin tests: plugin files written to a temp dir, an inbound sidecar with plugins
 * in front of the test app, and geminio streams to its services (raw HTTP over them: test/helpers/raw-http.ts).
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
