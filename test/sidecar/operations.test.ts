/**
 * Operations on real sidecar processes (the bundle run with plain node): check-config and run agree on every
 * problem of a config; a rotated server certificate (the inbound listener's and a TLS outbound HTTP listener's)
 * serves the next handshake, by SIGHUP and by a Kubernetes-style `..data` symlink swap, while live connections
 * stay; a drain that runs out of time exits 0 and the peer's requests in flight answer 503 at once.
 */
import { execFile } from 'node:child_process';
import { mkdirSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import tls from 'node:tls';
import { promisify } from 'node:util';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { dial, type End } from '../../sdk/index.js';
import { hasOpenssl, makeCert } from '../helpers/tls.js';
import { eventually } from '../helpers/wait.js';
import { type App, startApp } from './helpers.js';
import { bundledSidecar, type Child, freePort, killAll, start, waitReady } from './processes.js';

const run = promisify(execFile);
let work: string;
let bundled: string;
let app: App;

beforeAll(async () => {
  app = await startApp(1024);
  ({ work, bundled } = await bundledSidecar());
}, 60_000);

afterAll(async () => {
  killAll();
  await app?.close();
  rmSync(work, { recursive: true, force: true });
});

/** The serial number of the certificate a fresh TLS handshake with `port` sees. */
function serialAt(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false }, () => {
      const serial = s.getPeerCertificate().serialNumber;
      s.destroy();
      resolve(serial);
    });
    s.on('error', reject);
  });
}

async function metrics(admin: number): Promise<string> {
  return (await request(`http://127.0.0.1:${admin}/metrics`)).body.text();
}

function metricLine(text: string, prefix: string): number {
  const line = text.split('\n').find((l) => l.startsWith(prefix));
  return line ? Number(line.split(' ').pop()) : 0;
}

describe('check-config and run', () => {
  it('report every problem in one round, with its source, exit 2, the same lines for both', async () => {
    const dir = join(work, 'bad');
    mkdirSync(dir, { recursive: true });
    const pem = (name: string) => join(dir, name);
    if (hasOpenssl) {
      makeCert(join(dir, 'a'), '0a');
      makeCert(join(dir, 'b'), '0b');
    }
    const file = join(dir, 'bad.yaml');
    writeFileSync(
      file,
      stringify({
        admin: { listen: '127.0.0.1:99999' },
        inbound: { listen: '127.0.0.1:0', tls: { enabled: true } },
        upstreams: {
          up: { address: 'h:1', tls: { enabled: true, caFile: 'missing-ca.pem' } },
          ...(hasOpenssl
            ? {
                mismatch: {
                  address: 'h:2',
                  tls: { enabled: true, certFile: 'a/tls.crt', keyFile: 'b/tls.key' },
                },
              }
            : {}),
        },
        outbound: {
          http: [{ name: 'web', listen: 'no-such-host.invalid:8080', upstream: 'nope', service: 'app' }],
        },
        plugins: [{ path: 'missing-plugin.mjs' }, { path: 'builtin:nope' }],
      }),
    );
    const env = { ...process.env, GEMINIO_SIDECAR_GRACE_PERIOD_MS: '0x10' };
    const results: string[] = [];
    for (const cmd of [
      ['check-config', file],
      ['run', '--config', file],
    ]) {
      const err = (await run(process.execPath, [bundled, ...cmd], { env }).catch((e) => e)) as {
        code: number;
        stderr: string;
      };
      expect(err.code, err.stderr).toBe(2);
      results.push(err.stderr);
    }
    const [out, runOut] = results as [string, string];
    expect(runOut).toBe(out);
    const expected = [
      // the schema
      'admin.listen: got "127.0.0.1:99999", expected an address host:port with a port from 0 to 65535',
      'shutdown.gracePeriodMs: got "0x10", expected an integer from 0 to 86400000 (set by environment variable GEMINIO_SIDECAR_GRACE_PERIOD_MS)',
      // keys that refer to each other
      'outbound.http[0].upstream: got "nope", expected an upstream name',
      'inbound.tls: got {}, expected certFile and keyFile when enabled',
      // files, plugins, hosts
      `upstreams.up.tls.caFile: got ${JSON.stringify(pem('missing-ca.pem'))}, expected a readable file`,
      'outbound.http[0].listen: got "no-such-host.invalid:8080", expected a host that resolves',
      `plugins[0]: got ${JSON.stringify(pem('missing-plugin.mjs'))}, expected a plugin that loads`,
      'plugins[1]: got "builtin:nope", expected a plugin that loads and sets up (cannot load plugins[1] builtin:nope',
    ];
    if (hasOpenssl) {
      expected.push(
        `upstreams.mismatch.tls.keyFile: got ${JSON.stringify(pem('b/tls.key'))}, expected the private key of ${pem('a/tls.crt')}`,
      );
    }
    for (const line of expected) expect(out).toContain(line);
    expect(out.split('\n').filter((l) => l.startsWith('  - '))).toHaveLength(expected.length);
  });

  it('run without --config says it needs one and exits 2', async () => {
    const err = (await run(process.execPath, [bundled, 'run']).catch((e) => e)) as {
      code: number;
      stderr: string;
    };
    expect(err.code).toBe(2);
    expect(err.stderr).toContain('give the config file: run --config FILE');
  });
});

describe.skipIf(!hasOpenssl)('certificate rotation under a running sidecar (needs openssl)', () => {
  /** A Secret-like directory: ..<version>/{tls.crt,tls.key}, ..data -> ..<version>, tls.* -> ..data/tls.*. */
  function secretDir(dir: string, serial: string): void {
    makeCert(join(dir, `..v${serial}`), serial);
    symlinkSync(`..v${serial}`, join(dir, '..data'));
    symlinkSync('..data/tls.crt', join(dir, 'tls.crt'));
    symlinkSync('..data/tls.key', join(dir, 'tls.key'));
  }
  /** What the kubelet does: a new version directory, then one rename that swaps ..data to it. */
  function swap(dir: string, serial: string, make = () => makeCert(join(dir, `..v${serial}`), serial)): void {
    make();
    symlinkSync(`..v${serial}`, join(dir, '..data_tmp'));
    renameSync(join(dir, '..data_tmp'), join(dir, '..data'));
  }

  async function startTlsSidecar(name: string, watchFiles: boolean) {
    const base = join(work, name);
    mkdirSync(join(base, 'config'), { recursive: true });
    mkdirSync(join(base, 'secret'), { recursive: true });
    secretDir(join(base, 'secret'), '1a');
    const ports = { geminio: await freePort(), admin: await freePort(), web: await freePort() };
    const secret = { enabled: true, certFile: '../secret/tls.crt', keyFile: '../secret/tls.key' };
    writeFileSync(
      join(base, 'config', 'sidecar.yaml'),
      stringify({
        name,
        log: { level: 'info', format: 'json' },
        admin: { listen: `127.0.0.1:${ports.admin}` },
        reload: { watchFiles },
        inbound: {
          listen: `127.0.0.1:${ports.geminio}`,
          // Relative to the config file, as a mounted Secret beside a mounted ConfigMap.
          tls: secret,
        },
        services: { app: { target: app.url } },
        // An outbound HTTP listener with the same Secret: its certificate is reloaded the same way.
        upstreams: {
          self: { address: `127.0.0.1:${ports.geminio}`, tls: { enabled: true, rejectUnauthorized: false } },
        },
        outbound: {
          http: [
            { name: 'tweb', listen: `127.0.0.1:${ports.web}`, upstream: 'self', service: 'app', tls: secret },
          ],
        },
      }),
    );
    const child = start([bundled, 'run', '--config', join(base, 'config', 'sidecar.yaml')], work);
    await waitReady(ports.admin, child);
    // A live End over TLS: it must keep its session through every rotation.
    const end = await dial(`127.0.0.1:${ports.geminio}`, {
      meta: JSON.stringify({ name: `${name}-client` }),
      tls: { rejectUnauthorized: false },
    });
    let disconnects = 0;
    end.on('disconnect', () => disconnects++);
    return { base, ports, child, end, disconnects: () => disconnects };
  }

  async function stop(child: Child, end: End): Promise<void> {
    end.destroy();
    child.proc.kill('SIGTERM');
    expect(await child.exited).toBe(0);
  }

  it('by SIGHUP: the next handshake sees the new serial; the live End keeps its connection', async () => {
    const s = await startTlsSidecar('by-signal', false);
    try {
      expect(await serialAt(s.ports.geminio)).toBe('1A');
      swap(join(s.base, 'secret'), '2b');
      s.child.proc.kill('SIGHUP');
      await eventually(async () => (await serialAt(s.ports.geminio)) === '2B', 10_000, 'the new serial');
      await eventually(async () => (await serialAt(s.ports.web)) === '2B', 10_000, 'the listener serial');
      expect(s.end.state).toBe('connected');
      expect(s.disconnects()).toBe(0);
      expect(
        metricLine(await metrics(s.ports.admin), 'geminio_tls_reloads_total{what="inbound",outcome="ok"}'),
      ).toBe(1);
      // The child writes its log asynchronously: the line may follow the metric by a moment on a loaded machine.
      await eventually(
        () => s.child.out().includes('TLS or token files reloaded'),
        10_000,
        'the reload line',
      );
    } finally {
      await stop(s.child, s.end);
    }
  });

  it('by a ..data symlink swap, without a signal; an invalid set keeps the running certificate', async () => {
    const s = await startTlsSidecar('by-file', true);
    try {
      expect(await serialAt(s.ports.geminio)).toBe('1A');
      swap(join(s.base, 'secret'), '3c');
      await eventually(async () => (await serialAt(s.ports.geminio)) === '3C', 10_000, 'the new serial');
      await eventually(async () => (await serialAt(s.ports.web)) === '3C', 10_000, 'the listener serial');

      // A new version whose key is not the certificate's: refused, logged, counted; the old one stays.
      const secret = join(s.base, 'secret');
      swap(secret, '4d', () => {
        makeCert(join(secret, '..v4d'), '4d');
        makeCert(join(secret, 'other'), '5e');
        renameSync(join(secret, 'other', 'tls.key'), join(secret, '..v4d', 'tls.key'));
      });
      await eventually(() => s.child.out().includes('reload refused'), 10_000, 'the refusal');
      expect(s.child.out()).toContain('expected the private key of');
      expect(await serialAt(s.ports.geminio)).toBe('3C');
      expect(await serialAt(s.ports.web)).toBe('3C');
      expect(
        metricLine(await metrics(s.ports.admin), 'geminio_config_reloads_total{outcome="invalid"}'),
      ).toBeGreaterThan(0);

      swap(secret, '6f');
      await eventually(
        async () => (await serialAt(s.ports.geminio)) === '6F',
        10_000,
        'the serial after a fix',
      );
      expect(s.end.state).toBe('connected');
      expect(s.disconnects()).toBe(0);
    } finally {
      await stop(s.child, s.end);
    }
  });
});

describe('a drain that runs out of time', () => {
  it('exits 0, counts and logs what it cut; the peer answers 503 at once, not after a reconnect window', async () => {
    const ports = {
      geminio: await freePort(),
      inAdmin: await freePort(),
      outAdmin: await freePort(),
      web: await freePort(),
    };
    const inFile = join(work, 'drain-in.yaml');
    const outFile = join(work, 'drain-out.yaml');
    writeFileSync(
      inFile,
      stringify({
        name: 'drain-in',
        log: { level: 'info', format: 'json' },
        admin: { listen: `127.0.0.1:${ports.inAdmin}` },
        shutdown: { gracePeriodMs: 300 },
        inbound: { listen: `127.0.0.1:${ports.geminio}` },
        services: { app: { target: app.url, headersTimeoutMs: 120_000 } },
      }),
    );
    // Long timeouts on the outbound side: a request waiting for a reconnect would outlast the test.
    writeFileSync(
      outFile,
      stringify({
        name: 'drain-out',
        log: { level: 'info', format: 'json' },
        admin: { listen: `127.0.0.1:${ports.outAdmin}` },
        upstreams: {
          in: {
            address: `127.0.0.1:${ports.geminio}`,
            streamOpenTimeoutMs: 120_000,
            reconnect: { minDelayMs: 100, maxDelayMs: 500 },
          },
        },
        outbound: {
          http: [
            {
              name: 'web',
              listen: `127.0.0.1:${ports.web}`,
              upstream: 'in',
              service: 'app',
              headersTimeoutMs: 120_000,
            },
          ],
        },
      }),
    );
    const inbound = start([bundled, 'run', '--config', inFile], work);
    const outbound = start([bundled, 'run', '--config', outFile], work);
    await waitReady(ports.inAdmin, inbound);
    await waitReady(ports.outAdmin, outbound);
    const hits = app.hits;
    const answer = (method: string) =>
      request(`http://127.0.0.1:${ports.web}/slow?ms=60000`, {
        method: method as 'GET',
        body: method === 'POST' ? 'x' : undefined,
      }).then(async (r) => ({ status: r.statusCode, body: (await r.body.json()) as { code: string } }));
    const get = answer('GET');
    const post = answer('POST');
    await eventually(() => app.hits >= hits + 2, 10_000, 'both requests at the app');

    inbound.proc.kill('SIGTERM');
    expect(await inbound.exited, inbound.out()).toBe(0);
    expect(inbound.out()).not.toContain('shutdown failed');
    expect(inbound.out()).toContain('"dropped":2');
    expect(inbound.out()).toContain('grace period over; cutting the work in flight');

    for (const r of await Promise.all([get, post])) {
      expect(r.status).toBe(503);
      expect(r.body.code).toBe('UPSTREAM_UNAVAILABLE');
    }
    // And while the upstream is gone, new requests are refused at once too.
    const late = await request(`http://127.0.0.1:${ports.web}/x`);
    expect(late.statusCode).toBe(503);
    await late.body.dump();
    outbound.proc.kill('SIGTERM');
    expect(await outbound.exited).toBe(0);
  }, 60_000);
});
