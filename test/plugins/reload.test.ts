/**
 * Reload: plugins and their options reload with the config; a plugin that fails to load keeps the previous set
 * running (never a fallback to allowing everything), and the error is logged and counted.
 */

import { writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dial, type End } from '../../sdk/index.js';
import { parseConfig, withConfigDir } from '../../sidecar/config/load.js';
import type { Sidecar } from '../../sidecar/main.js';
import { exchange, get } from '../helpers/raw-http.js';
import { type App, memoryLogger, metricValue, startApp } from '../sidecar/helpers.js';
import { geminioAddress, httpStream, PLUGIN_API, startInbound, tempDir, writePlugin } from './helpers.js';

const policy = (blocked: string) => `
export default definePlugin({
  name: 'paths',
  setup(options) { return { blocked: options.blocked ?? ${JSON.stringify(blocked)} }; },
  hooks: { onRequest: (f, s) => (f.path.startsWith(s.blocked) ? deny('blocked ' + s.blocked) : allow()) },
});`;

let app: App;
let inbound: Sidecar;
let dir: string;
let end: End;
const log = memoryLogger('info');

beforeAll(async () => {
  app = await startApp(1024);
  dir = tempDir();
  writePlugin(dir, 'paths.ts', policy('/a'));
  inbound = await startInbound(app, { plugins: [{ path: 'paths.ts' }], configDir: dir, logger: log.logger });
  end = await dial(geminioAddress(inbound), { meta: '{"name":"c"}' });
});
afterAll(async () => {
  end?.destroy();
  inbound?.destroy();
  await app?.close();
});

async function statuses(): Promise<number[]> {
  return (await exchange(await httpStream(end), [get('/a'), get('/b')])).map((r) => r.status);
}

function reloadWith(plugins: unknown[]): Promise<void> {
  const next = withConfigDir(parseConfig({ ...inbound.config, plugins }), dir);
  return inbound.reload(next);
}

describe('plugin reload', () => {
  it('edited code and changed options take effect on reload', async () => {
    expect(await statuses()).toEqual([403, 200]);
    writePlugin(dir, 'paths.ts', policy('/b'));
    await reloadWith([{ path: 'paths.ts' }]);
    expect(await statuses()).toEqual([200, 403]);
    await reloadWith([{ path: 'paths.ts', options: { blocked: '/a' } }]);
    expect(await statuses()).toEqual([403, 200]);
  });

  it.each([
    ['a syntax error', 'export default definePlugin({ name: "paths", hooks: { onRequest: () => allow() ;'],
    [
      'an unknown hook',
      'export default definePlugin({ name: "paths", hooks: { onRequests: () => allow() } });',
    ],
    [
      'a failing setup',
      'export default definePlugin({ name: "paths", setup() { throw new Error("no db"); }, hooks: { onRequest: () => allow() } });',
    ],
  ])('a plugin with %s keeps the previous policy running', async (_what, code) => {
    const failures = log.lines.filter(
      (l) => l.msg === 'plugins failed to load; keeping the running ones',
    ).length;
    const errors = await metricValue(inbound, 'geminio_config_reloads_total', { outcome: 'error' });
    writeFileSync(
      `${dir}/broken.ts`,
      `import { allow, definePlugin } from ${JSON.stringify(PLUGIN_API)};\n${code}\n`,
    );
    await reloadWith([{ path: 'broken.ts' }]);
    expect(await statuses()).toEqual([403, 200]); // still the old policy, not "allow everything"
    expect(await metricValue(inbound, 'geminio_config_reloads_total', { outcome: 'error' })).toBe(errors + 1);
    const logged = log.lines.filter((l) => l.msg === 'plugins failed to load; keeping the running ones');
    expect(logged.length).toBe(failures + 1);
    expect(logged.at(-1)).toMatchObject({ plugins: ['paths'], err: expect.stringMatching(/broken\.ts/) });
  });

  it('a missing plugin file keeps the previous policy too', async () => {
    await reloadWith([{ path: 'nowhere.ts' }]);
    expect(await statuses()).toEqual([403, 200]);
  });
});
