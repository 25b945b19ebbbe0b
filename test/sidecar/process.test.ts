/**
 * The sidecar as a process: the esbuild bundle run with nothing but node, config errors and exit codes, SIGTERM
 * with requests in flight, SIGHUP reloads, and the demo (`npm start`).
 */
import { execFile } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Agent, request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { eventually } from '../helpers/wait.js';
import { type App, startApp, startTcpEcho } from './helpers.js';
import { bundledSidecar, freePort, killAll, root, start as spawnNode, waitReady } from './processes.js';

const run = promisify(execFile);
let work: string;
let bundled: string;
let app: App;
const start = (args: string[], cwd = work) => spawnNode(args, cwd);

/** A config with an inbound listener, an upstream to it and an HTTP listener to the test app. */
function selfConfig(
  ports: { geminio: number; web: number; admin: number },
  extra: Record<string, unknown> = {},
) {
  return {
    name: 'self',
    log: { level: 'info', format: 'json' },
    admin: { listen: `127.0.0.1:${ports.admin}` },
    shutdown: { gracePeriodMs: 5000 },
    inbound: { listen: `127.0.0.1:${ports.geminio}` },
    services: { app: { target: app.url } },
    upstreams: {
      self: { address: `127.0.0.1:${ports.geminio}`, reconnect: { minDelayMs: 20, maxDelayMs: 200 } },
    },
    outbound: { http: [{ name: 'web', listen: `127.0.0.1:${ports.web}`, upstream: 'self', service: 'app' }] },
    ...extra,
  };
}

beforeAll(async () => {
  app = await startApp(1024);
  ({ work, bundled } = await bundledSidecar());
}, 60_000);

afterAll(async () => {
  killAll();
  await app?.close();
  rmSync(work, { recursive: true, force: true });
});

describe('config errors', () => {
  it('a bad config: non-zero exit, each message names the key, the value and what was expected', async () => {
    const file = join(work, 'bad.yaml');
    writeFileSync(
      file,
      stringify({
        admin: { listen: 'nowhere' },
        upstreams: { up: { address: '127.0.0.1:7001', reconnect: { minDelayMs: -5 } } },
        outbound: {
          http: [{ name: 'web', listen: '127.0.0.1:8080', upstream: 'missing', service: 'app', bogus: 1 }],
        },
      }),
    );
    for (const cmd of [
      ['check-config', file],
      ['run', '--config', file],
    ]) {
      const err = (await run(process.execPath, [bundled, ...cmd]).catch((e) => e)) as {
        code: number;
        stderr: string;
      };
      expect(err.code).toBe(2);
      expect(err.stderr).toContain('admin.listen: got "nowhere", expected an address host:port');
      expect(err.stderr).toContain(
        'upstreams.up.reconnect.minDelayMs: got -5, expected an integer from 1 to 86400000',
      );
      expect(err.stderr).toContain('outbound.http[0].bogus: got 1, expected no such key');
    }
    // References are checked once the shapes are right.
    writeFileSync(
      file,
      stringify({
        outbound: { http: [{ name: 'web', listen: ':8080', upstream: 'missing', service: 'a' }] },
      }),
    );
    const err = (await run(process.execPath, [bundled, 'check-config', file]).catch((e) => e)) as {
      stderr: string;
    };
    expect(err.stderr).toContain(
      'outbound.http[0].upstream: got "missing", expected an upstream name (none defined)',
    );
  });

  it('check-config accepts a good file with environment overrides; --version and --help', async () => {
    const file = join(work, 'good.json');
    writeFileSync(file, JSON.stringify({ upstreams: { up: { address: 'example.org:7001' } } }));
    const env = { ...process.env, GEMINIO_SIDECAR__upstreams__up__address: 'example.org:7002' };
    const ok = await run(process.execPath, [bundled, 'check-config', file], { env });
    expect(ok.stdout).toContain('ok (1 upstreams');
    const bad = (await run(process.execPath, [bundled, 'check-config', file], {
      env: { ...env, GEMINIO_SIDECAR_ADMIN_PORT: 'x' },
    }).catch((e) => e)) as { code: number; stderr: string };
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('admin.listen: got "127.0.0.1:x"');
    expect((await run(process.execPath, [bundled, '--version'])).stdout.trim()).toMatch(/^\d+\.\d+\.\d+/);
    expect((await run(process.execPath, [bundled, '--help'])).stdout).toContain('check-config <file>');
  });
});

describe('the bundle as a process', () => {
  it('serves a request, then SIGTERM: requests in flight complete, new ones are refused, exit 0', async () => {
    const ports = { geminio: await freePort(), web: await freePort(), admin: await freePort() };
    const file = join(work, 'self.yaml');
    writeFileSync(file, stringify(selfConfig(ports)));
    const child = start([bundled, 'run', '--config', file]);
    await waitReady(ports.admin, child);
    const first = await request(`http://127.0.0.1:${ports.web}/hello`);
    expect(first.statusCode).toBe(200);
    expect(await first.body.json()).toMatchObject({ path: '/hello' });

    const agent = new Agent({ connections: 10 });
    const inflight = Array.from({ length: 5 }, (_, i) =>
      request(`http://127.0.0.1:${ports.web}/slow?ms=1000&i=${i}`, { dispatcher: agent }).then(async (r) => ({
        status: r.statusCode,
        body: await r.body.text(),
      })),
    );
    await new Promise((r) => setTimeout(r, 300));
    child.proc.kill('SIGTERM');
    await eventually(
      async () =>
        (await request(`http://127.0.0.1:${ports.admin}/readyz`).catch(() => ({ statusCode: 0 })))
          .statusCode !== 200,
      3_000,
      'not ready',
    );
    const refused = await request(`http://127.0.0.1:${ports.web}/late`).catch((e: Error) => e);
    expect(refused).toBeInstanceOf(Error);
    expect(await Promise.all(inflight)).toEqual(Array(5).fill({ status: 200, body: 'slow done' }));
    expect(await child.exited).toBe(0);
    expect(child.out()).toContain('"clean":true');
    await agent.close();
  });

  it('log.format pretty prints pino-pretty lines (loaded only then), json prints JSON lines', async () => {
    for (const format of ['pretty', 'json'] as const) {
      const ports = { geminio: await freePort(), web: await freePort(), admin: await freePort() };
      const file = join(work, `log-${format}.yaml`);
      const config = selfConfig(ports);
      writeFileSync(file, stringify({ ...config, log: { level: 'info', format } }));
      const child = start([bundled, 'run', '--config', file]);
      await waitReady(ports.admin, child);
      child.proc.kill('SIGTERM');
      expect(await child.exited).toBe(0);
      const lines = child
        .out()
        .split('\n')
        .filter((l) => l.includes('signal received'));
      expect(lines).toHaveLength(1);
      if (format === 'json') expect(JSON.parse(lines[0]!)).toMatchObject({ msg: 'signal received' });
      else expect(lines[0]).toMatch(/^\[[^\]]+\] INFO \(\d+\): signal received/);
    }
  });

  it('SIGHUP adds a listener without dropping the old one; a bad reload keeps the running config', async () => {
    const ports = { geminio: await freePort(), web: await freePort(), admin: await freePort() };
    const file = join(work, 'reload.yaml');
    const echo = await startTcpEcho();
    const base = selfConfig(ports);
    writeFileSync(file, stringify(base));
    const child = start([bundled, 'run', '--config', file]);
    try {
      await waitReady(ports.admin, child);
      const agent = new Agent({ connections: 1 });
      expect((await request(`http://127.0.0.1:${ports.web}/a`, { dispatcher: agent })).statusCode).toBe(200);
      const tcp = await freePort();
      writeFileSync(
        file,
        stringify({
          ...base,
          services: { ...base.services, echo: { target: `tcp://127.0.0.1:${echo.port}` } },
          outbound: {
            ...base.outbound,
            tcp: [{ name: 'tcp', listen: `127.0.0.1:${tcp}`, upstream: 'self', service: 'echo' }],
          },
        }),
      );
      child.proc.kill('SIGHUP');
      const echoed = await eventually(
        () =>
          new Promise<string>((resolve, reject) => {
            const s = net.connect(tcp, '127.0.0.1', () => s.end('reloaded'));
            let got = '';
            s.on('data', (c: Buffer) => (got += c));
            s.on('end', () => resolve(got));
            s.on('error', reject);
          }),
        5_000,
        'the new listener',
      );
      expect(echoed).toBe('reloaded');
      // The unchanged listener kept its keep-alive connection and serves on.
      const again = await request(`http://127.0.0.1:${ports.web}/b`, { dispatcher: agent });
      expect(again.statusCode).toBe(200);
      await again.body.dump();

      writeFileSync(file, 'admin: { listen: 42 }\n');
      child.proc.kill('SIGHUP');
      await eventually(() => child.out().includes('reload refused'), 5_000, 'the refusal');
      expect(child.out()).toContain('admin.listen: got 42');
      expect((await request(`http://127.0.0.1:${ports.web}/c`, { dispatcher: agent })).statusCode).toBe(200);
      await agent.close();
    } finally {
      child.proc.kill('SIGTERM');
      await child.exited;
      await echo.close();
    }
  });
});

describe('the demo (npm start)', () => {
  it('starts, and the commands it prints answer', async () => {
    const names = ['http', 'tcp', 'geminio', 'admin', 'inbound-admin', 'app', 'echo'];
    const flags: string[] = [];
    for (const n of names) flags.push(`--${n}-port`, String(await freePort()));
    const child = start(
      ['--import', 'tsx', join(root, 'sidecar/cli.ts'), 'demo', '--log-level', 'warn', ...flags],
      root,
    );
    try {
      await eventually(
        () => child.out().includes('Ctrl-C to stop.'),
        20_000,
        `the demo; output:\n${child.out()}`,
      );
      const lines = child
        .out()
        .split('\n')
        .map((l) => l.trim());
      const curls = lines.filter((l) => l.startsWith('curl '));
      expect(curls).toHaveLength(5);
      for (const line of curls) {
        const url = line.split(' ').find((w) => w.startsWith('http://'))!;
        const post = line.includes('-X POST');
        const body = post ? /'([^']*)'/.exec(line)![1] : undefined;
        const res = await request(url, { method: post ? 'POST' : 'GET', body });
        expect(res.statusCode, line).toBeLessThan(300);
        await res.body.dump();
      }
      const nc = lines.find((l) => l.startsWith('nc '))!.split(' ');
      const got = await new Promise<string>((resolve, reject) => {
        const s = net.connect(Number(nc[2]), nc[1]!, () => s.end('ping\n'));
        let data = '';
        s.on('data', (c: Buffer) => (data += c));
        s.on('end', () => resolve(data));
        s.on('error', reject);
      });
      expect(got).toBe('ping\n');
      await eventually(() => child.out().includes('webhook: topic=news'), 5_000, 'the webhook line');
      child.proc.kill('SIGINT');
      expect(await child.exited).toBe(0);
    } finally {
      if (child.proc.exitCode === null) child.proc.kill('SIGKILL');
    }
  });
});
