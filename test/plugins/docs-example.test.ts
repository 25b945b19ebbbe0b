/**
 * The complete example of docs/PLUGINS.md is extracted into a temp file, loaded from a config file that names it
 * by a relative path, and checked to answer exactly as the doc says.
 */

import { readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type net from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dial, type End } from '../../sdk/index.js';
import { loadConfig } from '../../sidecar/config/load.js';
import { Sidecar } from '../../sidecar/main.js';
import { exchange, get } from '../helpers/raw-http.js';
import { type App, quiet, startApp } from '../sidecar/helpers.js';
import { geminioAddress, httpStream, PLUGIN_API, tempDir } from './helpers.js';

let app: App;
let inbound: Sidecar;
/** The service target: answers with the request headers it got. */
const headersApp = http.createServer((req, res) => {
  req.resume();
  res.end(JSON.stringify(req.headers));
});
const ends: End[] = [];

/** The ```ts block right after the <!-- plugin-example --> marker. */
function extractExample(): string {
  const doc = readFileSync(new URL('../../docs/PLUGINS.md', import.meta.url), 'utf8');
  const at = doc.indexOf('<!-- plugin-example -->');
  const match = /```ts\n([\s\S]*?)```/.exec(doc.slice(at));
  if (at < 0 || !match) throw new Error('no plugin example in docs/PLUGINS.md');
  return match[1]!;
}

beforeAll(async () => {
  app = await startApp(1024);
  await new Promise<void>((r) => headersApp.listen(0, '127.0.0.1', r));
  const target = `http://127.0.0.1:${(headersApp.address() as net.AddressInfo).port}`;
  const dir = tempDir();
  const code = extractExample();
  expect(code).toContain("from 'geminio/plugins'");
  // The package import points at the source here (the doc's reader has the package installed).
  writeFileSync(
    path.join(dir, 'read-only-clients.ts'),
    code.replace("'geminio/plugins'", JSON.stringify(PLUGIN_API)),
  );
  writeFileSync(
    path.join(dir, 'sidecar.yaml'),
    [
      'name: inbound',
      'log: { level: silent }',
      'admin: { listen: 127.0.0.1:0 }',
      'inbound:',
      '  listen: 127.0.0.1:0',
      `  rpc: { time: { url: ${app.url}/time } }`,
      `services: { app: { target: ${target} } }`,
      'plugins:',
      '  - path: ./read-only-clients.ts',
      '    options: { readOnlyClients: [reporter] }',
      '',
    ].join('\n'),
  );
  inbound = new Sidecar(loadConfig(path.join(dir, 'sidecar.yaml')), { logger: quiet() });
  await inbound.start();
});
afterAll(async () => {
  for (const e of ends) e.destroy();
  inbound?.destroy();
  headersApp.closeAllConnections();
  headersApp.close();
  await app?.close();
});

async function client(name?: string): Promise<End> {
  const end = await dial(geminioAddress(inbound), { meta: JSON.stringify(name ? { name } : {}) });
  ends.push(end);
  return end;
}

describe('the docs/PLUGINS.md example', () => {
  it('a read-only client may GET, not POST (405) nor call methods', async () => {
    const end = await client('reporter');
    const [got, posted] = await exchange(await httpStream(end), [get('/report'), get('/report', 'POST')]);
    expect(got!.status).toBe(200);
    expect(JSON.parse(got!.body)).toMatchObject({
      'x-access': 'read-only',
      'x-geminio-client-name': 'reporter',
    });
    expect(posted).toMatchObject({ status: 405 });
    expect(JSON.parse(posted!.body)).toEqual({ error: 'reporter may only read', code: 'FORBIDDEN' });
    await expect(end.call('time', 'x')).rejects.toThrow(/denied: reporter may not call time/);
  });

  it('another client may POST and call; the app sees the header the plugin adds', async () => {
    const end = await client('editor');
    const [posted] = await exchange(await httpStream(end), [get('/report', 'POST')]);
    expect(posted!.status).toBe(200);
    expect(JSON.parse(posted!.body)).toMatchObject({
      'x-access': 'full',
      'x-geminio-client-id': String(end.clientId),
    });
    expect((await end.call('time', 'x')).data.toString()).toBe('12:00');
  });

  it('a client that announces no name cannot connect', async () => {
    await expect(client()).rejects.toThrow(/announce a name in the connection meta/);
  });
});
