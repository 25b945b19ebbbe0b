/**
 * The admin port shows the mesh: /debug/ends (JSON) and the page at `/`, loaded in a real headless Chromium (the
 * Debian package; .ci/run installs it), which must render the upstream with its ClientID, the listeners, the
 * services, the inbound End with its ClientID and open streams by service, reconnects and the last error.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DebugEnds } from '../../sidecar/admin/page.js';
import type { Sidecar } from '../../sidecar/main.js';
import { eventually } from '../helpers/wait.js';
import { type App, type Pair, startApp, startPair, startTcpEcho } from './helpers.js';

const CHROMIUM = ['/usr/bin/chromium', '/usr/bin/chromium-browser'].find((p) => existsSync(p));

/** Runs Chromium (asynchronously: the sidecars it talks to run in this process). */
function chromium(args: string[]): Promise<{ status: number | null; stdout: string; stderr: string }> {
  const profile = mkdtempSync(path.join(os.tmpdir(), 'chromium-'));
  const child = spawn(
    CHROMIUM!,
    [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
      `--user-data-dir=${profile}`,
      ...args,
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => (stderr = (stderr + d).slice(-8000)));
  const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
  return new Promise((resolve) =>
    child.once('close', (status) => {
      clearTimeout(timer);
      rmSync(profile, { recursive: true, force: true });
      resolve({ status, stdout, stderr });
    }),
  );
}

const adminUrl = (s: Sidecar) => `http://127.0.0.1:${s.admin!.address().port}`;

describe('admin: the mesh as a sidecar sees it', () => {
  let app: App;
  let echo: Awaited<ReturnType<typeof startTcpEcho>>;
  let pair: Pair;
  let sock: net.Socket | undefined;

  beforeAll(async () => {
    app = await startApp(1024);
    echo = await startTcpEcho();
    pair = await startPair(app, echo.port);
    // One request, so the inbound side holds an HTTP stream of "app"; a TCP connection holds one of "echo".
    await (await fetch(`${pair.web}/x`)).text();
    sock = net.connect(pair.tcpPort, '127.0.0.1');
    sock.write('hi');
    await new Promise((r) => sock!.once('data', r));
  });
  afterAll(async () => {
    sock?.destroy();
    await pair?.close();
    await echo?.close();
    await app?.close();
  });

  it('/debug/ends lists upstreams, listeners, services, Ends with ClientIDs and streams by service', async () => {
    const out = (await (await fetch(`${adminUrl(pair.outbound)}/debug/ends`)).json()) as DebugEnds;
    expect(out.upstreams[0]).toMatchObject({
      name: 'up',
      state: 'connected',
      reconnects: 0,
      lastError: null,
    });
    expect(out.upstreams[0]!.clientId).toMatch(/^\d+$/);
    expect(out.listeners.map((l) => l.name).sort()).toEqual(['tcp', 'web']);
    expect(out.upstreams[0]!.streamsByService).toMatchObject({ app: expect.any(Number), echo: 1 });
    const inb = await eventually(async () => {
      const d = (await (await fetch(`${adminUrl(pair.inbound)}/debug/ends`)).json()) as DebugEnds;
      return d.inbound[0]?.streamsByService.echo === 1 ? d : undefined;
    });
    expect(inb!.inbound[0]).toMatchObject({ name: 'outbound', clientId: out.upstreams[0]!.clientId });
    expect(inb!.services.map((s) => s.name).sort()).toEqual(['app', 'echo']);
  });

  it('the page at / renders in headless Chromium with the same facts', async () => {
    if (!CHROMIUM) {
      // .ci/run installs chromium; a machine without it cannot run this check.
      expect(process.env.CI, 'chromium is required in CI').toBeFalsy();
      return;
    }
    const out = (await (await fetch(`${adminUrl(pair.outbound)}/debug/ends`)).json()) as DebugEnds;
    const clientId = out.upstreams[0]!.clientId!;
    const dom = await chromium(['--dump-dom', `${adminUrl(pair.outbound)}/`]);
    expect(dom.status, dom.stderr.slice(-2000)).toBe(0);
    expect(dom.stdout).toContain('<table id="upstreams">');
    expect(dom.stdout).toContain(`<td>${clientId}</td>`);
    expect(dom.stdout).toMatch(/<td>echo: 1<\/td>|echo: 1/);
    expect(dom.stdout).toContain('<td>web</td>');
    const inbound = await chromium(['--dump-dom', `${adminUrl(pair.inbound)}/`]);
    expect(inbound.stdout).toContain('<table id="ends">');
    expect(inbound.stdout).toContain(`<td>${clientId}</td>`);
    expect(inbound.stdout).toContain('<td>outbound</td>');
    // And it paints: a screenshot of the page is a real PNG of some size.
    const shot = path.join(mkdtempSync(path.join(os.tmpdir(), 'shot-')), 'admin.png');
    const s = await chromium([
      `--screenshot=${shot}`,
      '--window-size=1200,900',
      `${adminUrl(pair.outbound)}/`,
    ]);
    expect(s.status, s.stderr.slice(-2000)).toBe(0);
    expect(statSync(shot).size).toBeGreaterThan(10_000);
  }, 120_000);
});
