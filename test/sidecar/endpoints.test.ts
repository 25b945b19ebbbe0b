/**
 * Upstreams with many endpoints (issue 15), with real parts: three inbound sidecars on 127.0.0.1, 127.0.0.2 and
 * 127.0.0.3 (Linux routes all of 127/8 to loopback), each in front of its own HTTP app, one outbound sidecar that
 * balances over them, the chaos proxy for a slow endpoint, and a real DNS server (dnsmasq) for discovery.
 *
 * No assertion depends on speed: shares are compared with each other, "fast" failures are the ones that come
 * back as the sidecar's own 503 instead of a timeout.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import dgram from 'node:dgram';
import { promises as dnsPromises } from 'node:dns';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Agent, request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ChaosProxy } from '../../chaos/index.js';
import { parseConfig } from '../../sidecar/config/load.js';
import { Sidecar } from '../../sidecar/main.js';
import type { HttpOutboundListener } from '../../sidecar/outbound/http-listener.js';
import type { Hook } from '../../sidecar/policy/hooks.js';
import { delay, eventually } from '../helpers/wait.js';
import { inboundConfig, metricValue, quiet } from './helpers.js';

const HOSTS = ['127.0.0.1', '127.0.0.2', '127.0.0.3'];

/** An app that answers with its name, after `?ms=` milliseconds. */
async function startNamedApp(who: string): Promise<{ url: string; close: () => Promise<void> }> {
  const server = http.createServer((req, res) => {
    const ms = Number(new URL(req.url ?? '/', 'http://x').searchParams.get('ms') ?? 0);
    req.resume();
    req.on('end', () => setTimeout(() => res.end(who), ms));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as net.AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    close: async () => {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    },
  };
}

/** The three inbound sidecars, on one port P at 127.0.0.{1,2,3} (DNS gives addresses, the port is configured). */
class Backends {
  readonly apps: Array<{ url: string; close: () => Promise<void> }> = [];
  readonly sidecars: Array<Sidecar | undefined> = [];
  port = 0;

  async start(): Promise<void> {
    for (const h of HOSTS) this.apps.push(await startNamedApp(h));
    for (let tries = 0; ; tries++) {
      try {
        this.port = 0;
        for (let i = 0; i < HOSTS.length; i++) await this.up(i);
        return;
      } catch (err) {
        // Another test took the port on one of the addresses: start over on a fresh one.
        for (let i = 0; i < HOSTS.length; i++) this.down(i);
        if (tries > 5) throw err;
      }
    }
  }

  async up(i: number): Promise<void> {
    const cfg = inboundConfig({ app: { target: this.apps[i]!.url } });
    cfg.inbound!.listen = `${HOSTS[i]}:${this.port}`;
    for (let tries = 0; ; tries++) {
      const s = new Sidecar(cfg, { logger: quiet() });
      try {
        await s.start();
        this.sidecars[i] = s;
        if (this.port === 0) this.port = s.inbound!.address()!.port;
        return;
      } catch (err) {
        if (this.port === 0 || tries > 20 || !/EADDRINUSE/.test((err as Error).message)) throw err;
        await delay(50); // the port of a killed sidecar is free a moment later
      }
    }
  }

  /** Kills an endpoint: its connections drop at once, as when its process dies. */
  down(i: number): void {
    this.sidecars[i]?.destroy();
    this.sidecars[i] = undefined;
  }

  async close(): Promise<void> {
    for (let i = 0; i < HOSTS.length; i++) this.down(i);
    for (const a of this.apps) await a.close();
  }
}

function outboundSidecar(upstreams: Record<string, unknown>, name = 'outbound', hooks: Hook[] = []): Sidecar {
  const http = Object.keys(upstreams).map((u) => ({
    name: u,
    listen: '127.0.0.1:0',
    upstream: u,
    service: 'app',
  }));
  return new Sidecar(
    parseConfig({
      name,
      log: { level: 'silent' },
      admin: { listen: '127.0.0.1:0' },
      upstreams,
      outbound: { http },
    }),
    { logger: quiet(), hooks },
  );
}

const upstreamDefaults = {
  reconnect: { minDelayMs: 20, maxDelayMs: 200 },
  // A 250 ms EWMA time constant (the default is 10 s): the peak-sensitive EWMA takes a stall of this busy machine
  // (a GC pause, a descheduled process) in whole, and a case here lasts about a second, so a stall must fade
  // within it instead of skewing the whole case. Equal shares under steady latency with the default time
  // constant are the balancer unit test's.
  balancing: { ejectAfter: 3, ejectBaseMs: 200, ejectMaxMs: 1_000, drainMs: 5_000, ewmaDecayMs: 250 },
};

const agent = new Agent({ connections: 64, keepAliveTimeout: 10_000 });

interface Result {
  status: number;
  body: string;
}

async function send(base: string, p: string, method = 'GET'): Promise<Result> {
  try {
    const r = await request(`${base}${p}`, {
      method,
      dispatcher: agent,
      body: method === 'POST' ? 'x' : undefined,
    });
    return { status: r.statusCode, body: await r.body.text() };
  } catch (err) {
    return { status: 0, body: (err as Error).message };
  }
}

/** `n` requests, `concurrency` at a time; calls `during` once, after `at` of them were sent. */
async function load(
  base: string,
  p: string,
  o: { n: number; concurrency: number; method?: string; at?: number; during?: () => unknown },
): Promise<Result[]> {
  const results: Result[] = [];
  let next = 0;
  const worker = async () => {
    while (next < o.n) {
      const i = next++;
      if (i === o.at) await o.during?.();
      results.push(await send(base, p, o.method));
    }
  };
  await Promise.all(Array.from({ length: o.concurrency }, worker));
  return results;
}

function shares(results: Result[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const r of results) if (r.status === 200) out[r.body] = (out[r.body] ?? 0) + 1;
  return out;
}

function listenerUrl(s: Sidecar, name: string): string {
  return `http://127.0.0.1:${(s.listeners.get(name)!.listener as HttpOutboundListener).address().port}`;
}

interface DebugEndpoint {
  endpoint: string;
  state: string;
  health: string;
  inflight: number;
}

async function debugEndpoints(s: Sidecar, upstream: string): Promise<DebugEndpoint[]> {
  const r = await request(`http://127.0.0.1:${s.admin!.address().port}/debug/ends`);
  const ends = (await r.body.json()) as { upstreams: Array<{ name: string; endpoints: DebugEndpoint[] }> };
  return ends.upstreams.find((u) => u.name === upstream)!.endpoints;
}

async function connected(s: Sidecar, upstream: string): Promise<string[]> {
  return (await debugEndpoints(s, upstream)).filter((e) => e.state === 'connected').map((e) => e.endpoint);
}

describe('an upstream of three static endpoints', () => {
  const backends = new Backends();
  let chaos: ChaosProxy;
  let outbound: Sidecar;
  /** A second sidecar (an inbound sidecar holds one End per announced name). */
  let slowed: Sidecar;
  let web: string;
  let slow: string;

  beforeAll(async () => {
    await backends.start();
    chaos = new ChaosProxy({ target: { host: HOSTS[1]!, port: backends.port } });
    const at = await chaos.start();
    const eps = HOSTS.map((h) => `${h}:${backends.port}`);
    outbound = outboundSidecar({ three: { endpoints: eps, ...upstreamDefaults } });
    // The second endpoint again, through the chaos proxy (slowed down by the test).
    slowed = outboundSidecar(
      { slowed: { endpoints: [eps[0], `${at.host}:${at.port}`], ...upstreamDefaults } },
      'outbound-2',
    );
    await outbound.start();
    await slowed.start();
    web = listenerUrl(outbound, 'three');
    slow = listenerUrl(slowed, 'slowed');
    await eventually(
      async () => (await connected(outbound, 'three')).length === 3,
      10_000,
      'three connected',
    );
    await eventually(
      async () => (await connected(slowed, 'slowed')).length === 2,
      10_000,
      'two connected',
    ).catch(async (err: Error) => {
      throw new Error(`${err.message}: ${JSON.stringify(await debugEndpoints(slowed, 'slowed'))}`);
    });
  });

  afterAll(async () => {
    outbound?.destroy();
    slowed?.destroy();
    await chaos?.close();
    await backends.close();
  });

  it('spreads requests over equal endpoints, each within 20% of an equal share', async () => {
    await load(web, '/?ms=5', { n: 90, concurrency: 12 }); // warm: pools open, EWMAs start
    // Real latencies on this shared machine are noisy (stalls of a few ms on one endpoint's End), so the band is
    // 20% here; the 10% of steady, equal latencies is the balancer unit test's (test/unit/sidecar/balancer.test.ts).
    // The app takes 10 ms, so a stall of a few ms is a small peak in the EWMA: at 2 ms, one stall in a loaded CI run
    // tripled an endpoint's cost and left it 731 of 1,800 (5 runs under 3 CPU hogs: worst 7% off at 2 ms, 5% at 10).
    const n = 1800;
    const results = await load(web, '/?ms=10', { n, concurrency: 12 });
    expect(results.filter((r) => r.status !== 200)).toEqual([]);
    const s = shares(results);
    expect(Object.keys(s).sort()).toEqual(HOSTS);
    for (const h of HOSTS) {
      expect(s[h]!, JSON.stringify(s)).toBeGreaterThanOrEqual((n / 3) * 0.8);
      expect(s[h]!, JSON.stringify(s)).toBeLessThanOrEqual((n / 3) * 1.2);
    }
    // Metrics per endpoint, with the endpoint as a label.
    const ok = await metricValue(outbound, 'geminio_upstream_endpoint_requests_total', {
      upstream: 'three',
      endpoint: `${HOSTS[0]}:${backends.port}`,
      outcome: 'ok',
    });
    expect(ok).toBeGreaterThanOrEqual(s[HOSTS[0]!]!);
  });

  it('balances HTTP/2 per request too: one h2c session to the listener reaches every endpoint', async () => {
    const session = http2.connect(web);
    session.on('error', () => {});
    try {
      const one = () =>
        new Promise<string>((resolve, reject) => {
          const r = session.request({ ':path': '/?ms=2' });
          let who = '';
          r.on('data', (c: Buffer) => {
            who += c.toString();
          });
          r.on('end', () => resolve(who));
          r.on('error', reject);
          r.end();
        });
      const counts: Record<string, number> = {};
      const n = 600;
      for (let i = 0; i < n; i += 12) {
        for (const who of await Promise.all(Array.from({ length: 12 }, one)))
          counts[who] = (counts[who] ?? 0) + 1;
      }
      expect(Object.keys(counts).sort()).toEqual(HOSTS);
      // Each endpoint takes a fair part (the band is wide: this is about per-request leasing, not the balancer).
      for (const h of HOSTS) expect(counts[h]!, JSON.stringify(counts)).toBeGreaterThanOrEqual(n / 3 / 2);
    } finally {
      session.close();
    }
  });

  it('the outbound hooks see the ClientID of the endpoint each request goes to (HTTP/1.1 and HTTP/2)', async () => {
    const seen = new Map<string, string | undefined>();
    const record: Hook = (point, facts) => {
      if (point === 'request' && facts.path?.startsWith('/cid/')) seen.set(facts.path, facts.clientId);
      return undefined;
    };
    const eps = HOSTS.map((h) => `${h}:${backends.port}`);
    const watched = outboundSidecar({ cid: { endpoints: eps, ...upstreamDefaults } }, 'outbound-cid', [
      record,
    ]);
    await watched.start();
    try {
      await eventually(async () => (await connected(watched, 'cid')).length === 3, 10_000, 'three connected');
      const ids = Object.fromEntries(
        (await debugEndpoints(watched, 'cid')).map((e) => [
          e.endpoint,
          (e as unknown as { clientId: string }).clientId,
        ]),
      );
      expect(new Set(Object.values(ids)).size).toBe(3);
      const url = listenerUrl(watched, 'cid');
      const served: Array<[string, string]> = []; // [path, who answered]
      for (let i = 0; i < 30; i++) {
        const r = await send(url, `/cid/h1-${i}`);
        expect(r.status).toBe(200);
        served.push([`/cid/h1-${i}`, r.body]);
      }
      const session = http2.connect(url);
      session.on('error', () => {});
      try {
        for (let i = 0; i < 30; i++) {
          const path = `/cid/h2-${i}`;
          const who = await new Promise<string>((resolve, reject) => {
            const r = session.request({ ':path': path });
            let body = '';
            r.on('data', (c: Buffer) => {
              body += c.toString();
            });
            r.on('end', () => resolve(body));
            r.on('error', reject);
            r.end();
          });
          served.push([path, who]);
        }
      } finally {
        session.close();
      }
      // Every endpoint served some, and each request's hook saw the ClientID of the endpoint that answered it.
      expect(new Set(served.map(([, who]) => who)).size).toBe(3);
      for (const [path, who] of served) expect(seen.get(path), path).toBe(ids[`${who}:${backends.port}`]);
    } finally {
      watched.destroy();
    }
  });

  it('sends less to an endpoint slowed down through the chaos proxy', async () => {
    const before = shares(await load(slow, '/?ms=5', { n: 200, concurrency: 4 }));
    chaos.setFaults({ delayMs: 40 });
    // A first round teaches the EWMA; the second is measured.
    await load(slow, '/?ms=5', { n: 40, concurrency: 4 });
    const after = shares(await load(slow, '/?ms=5', { n: 200, concurrency: 4 }));
    chaos.clearFaults();
    const share = (s: Record<string, number>) =>
      (s[HOSTS[1]!] ?? 0) / ((s[HOSTS[1]!] ?? 0) + (s[HOSTS[0]!] ?? 0));
    expect(share(before), JSON.stringify(before)).toBeGreaterThan(0.3);
    expect(share(after), JSON.stringify({ before, after })).toBeLessThan(share(before) / 2);
  });

  it('kills one endpoint under load: no idempotent request fails, only POSTs in flight on it fail, with 503', async () => {
    const concurrency = 9;
    const [gets, posts] = await Promise.all([
      load(web, '/?ms=20', { n: 600, concurrency, at: 200, during: () => backends.down(1) }),
      load(web, '/?ms=20', { n: 300, concurrency, method: 'POST' }),
    ]);
    expect(gets.filter((r) => r.status !== 200)).toEqual([]);
    const failed = posts.filter((r) => r.status !== 200);
    // At most the POSTs in flight on the killed endpoint when it died (the load's concurrency), each a 503.
    expect(failed.length).toBeLessThanOrEqual(concurrency);
    for (const f of failed) expect(f.status, f.body).toBe(503);
    expect(await connected(outbound, 'three')).toHaveLength(2);
    // After the kill the others take everything.
    const after = shares(await load(web, '/', { n: 60, concurrency: 6 }));
    expect(after[HOSTS[1]!]).toBeUndefined();
    // Readiness holds while minReady (1) endpoints are connected.
    const ready = await request(`http://127.0.0.1:${outbound.admin!.address().port}/readyz`);
    expect(ready.statusCode).toBe(200);
    await ready.body.dump();
  });

  it('takes the restarted endpoint back once it reconnects', async () => {
    await backends.up(1);
    await eventually(async () => (await connected(outbound, 'three')).length === 3, 10_000, 'reconnected');
    // Failures of the old connection may have ejected it: then it takes traffic again after one probe (the
    // backoff here is at most ejectMaxMs, 1 s). Rounds of requests until it served some of them.
    await eventually(
      async () => (shares(await load(web, '/?ms=5', { n: 30, concurrency: 6 }))[HOSTS[1]!] ?? 0) > 0,
      10_000,
      'the restarted endpoint serving',
    );
    const e = (await debugEndpoints(outbound, 'three')).find(
      (x) => x.endpoint === `${HOSTS[1]}:${backends.port}`,
    );
    expect(e?.health).toBe('ready');
  });

  it('a reload that changes the endpoint list keeps the other endpoints connected and drains the removed one', async () => {
    const ids = async () =>
      Object.fromEntries(
        (await debugEndpoints(outbound, 'three')).map((e) => [
          e.endpoint,
          (e as unknown as { clientId: string }).clientId,
        ]),
      );
    const before = await ids();
    const eps = HOSTS.map((h) => `${h}:${backends.port}`);
    const next = structuredClone(outbound.config);
    next.upstreams.three!.endpoints = eps.slice(0, 2);
    await outbound.reload(next);
    await eventually(async () => (await debugEndpoints(outbound, 'three')).length === 2, 10_000, 'two left');
    const after = await ids();
    expect(after).toEqual({ [eps[0]!]: before[eps[0]!], [eps[1]!]: before[eps[1]!] });
    expect(Object.keys(shares(await load(web, '/', { n: 30, concurrency: 3 })))).not.toContain(HOSTS[2]);
    const back = structuredClone(next);
    back.upstreams.three!.endpoints = eps;
    await outbound.reload(back);
    await eventually(async () => (await connected(outbound, 'three')).length === 3, 10_000, 'three again');
  });

  it('answers 503 at once with all endpoints down, and /readyz is 503', async () => {
    for (let i = 0; i < HOSTS.length; i++) backends.down(i);
    await eventually(async () => (await connected(outbound, 'three')).length === 0, 10_000, 'all down');
    const r = await send(web, '/');
    expect(r.status).toBe(503);
    expect(JSON.parse(r.body)).toMatchObject({ code: expect.any(String) });
    const ready = await request(`http://127.0.0.1:${outbound.admin!.address().port}/readyz`);
    expect(ready.statusCode).toBe(503);
    const body = (await ready.body.json()) as { reasons: string[] };
    expect(body.reasons.join()).toMatch(/upstream three has 0 of 3 endpoints connected/);
  });
});

/** dnsmasq, when installed (CI installs it): the test skips with the reason otherwise, and fails on CI. */
const dnsmasq = spawnSync('dnsmasq', ['--version']).status === 0;
if (!dnsmasq && process.env.CI === 'true') throw new Error('dnsmasq is required on CI (.ci/run installs it)');

/** A port free for both UDP and TCP on 127.0.0.1 right now: dnsmasq binds both. */
async function freeDnsPort(): Promise<number> {
  for (;;) {
    const udp = dgram.createSocket('udp4');
    await new Promise<void>((r) => udp.bind(0, '127.0.0.1', r));
    const { port } = udp.address();
    const tcp = net.createServer();
    const tcpFree = await new Promise<boolean>((r) => {
      tcp.once('error', () => r(false));
      tcp.listen(port, '127.0.0.1', () => r(true));
    });
    await new Promise<void>((r) => udp.close(() => r()));
    if (tcpFree) await new Promise<void>((r) => tcp.close(() => r()));
    if (tcpFree) return port;
  }
}

/**
 * Starts dnsmasq on a free port and waits until it answers. The port can still be taken between the check and
 * dnsmasq's bind (the suite's other files open thousands of connections, whose local ports come from the same
 * range), so a dnsmasq that exits with "Address already in use" is started again on another port.
 */
async function startDnsmasq(args: string[]): Promise<{ dns: ChildProcess; port: number }> {
  for (let attempt = 1; ; attempt++) {
    const port = await freeDnsPort();
    const dns = spawn('dnsmasq', [...args, `--port=${port}`], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    dns.stderr!.on('data', (c: Buffer) => {
      stderr += c.toString();
    });
    const exited = new Promise<void>((r) => dns.once('exit', () => r()));
    const resolver = new dnsPromises.Resolver({ timeout: 500, tries: 1 });
    resolver.setServers([`127.0.0.1:${port}`]);
    // Any answer (NXDOMAIN or REFUSED included) means it is serving; an exit means it could not start.
    const answered = (async () => {
      while (dns.exitCode === null) {
        const e = await resolver.resolve4('ready.geminio.test').then(
          () => undefined,
          (err: NodeJS.ErrnoException) => err,
        );
        if (e?.code !== 'ETIMEOUT' && e?.code !== 'ECONNREFUSED') return;
        await delay(50);
      }
    })();
    await Promise.race([answered, exited]);
    if (dns.exitCode === null) return { dns, port };
    if (attempt >= 5 || !/in use/i.test(stderr)) throw new Error(`dnsmasq exited: ${stderr}`);
  }
}

describe.skipIf(!dnsmasq)('an upstream discovered in DNS (dnsmasq: install it to run these)', () => {
  const backends = new Backends();
  const dir = mkdtempSync(path.join(os.tmpdir(), 'geminio-dns-'));
  const hostsFile = path.join(dir, 'hosts');
  let dns: ChildProcess;
  let outbound: Sidecar;
  let web: string;
  const NAME = 'svc.geminio.test';

  const publish = (hosts: string[]) => {
    writeFileSync(hostsFile, hosts.map((h) => `${h} ${NAME}\n`).join(''));
    dns.kill('SIGHUP'); // dnsmasq reads its hosts files again
  };

  beforeAll(async () => {
    await backends.start();
    writeFileSync(hostsFile, '');
    const started = await startDnsmasq([
      '--keep-in-foreground',
      '--conf-file=/dev/null',
      '--no-resolv',
      '--no-hosts',
      `--addn-hosts=${hostsFile}`,
      '--listen-address=127.0.0.1',
      '--bind-interfaces',
      '--local-ttl=1',
      '--pid-file',
      '--user=root',
    ]);
    dns = started.dns;
    const port = started.port;
    publish(HOSTS.slice(0, 2));
    outbound = outboundSidecar({
      found: {
        discovery: {
          name: NAME,
          port: backends.port,
          resolver: `127.0.0.1:${port}`,
          refreshMs: 500,
          minRefreshMs: 100,
        },
        ...upstreamDefaults,
      },
    });
    await outbound.start();
    web = listenerUrl(outbound, 'found');
    await eventually(async () => (await connected(outbound, 'found')).length === 2, 10_000, 'two found');
  });

  afterAll(async () => {
    outbound?.destroy();
    dns?.kill();
    await backends.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('connects to an address added to DNS within one refresh, and balances onto it', async () => {
    const before = shares(await load(web, '/', { n: 60, concurrency: 6 }));
    expect(Object.keys(before).sort()).toEqual(HOSTS.slice(0, 2));
    publish(HOSTS);
    await eventually(async () => (await connected(outbound, 'found')).length === 3, 10_000, 'third found');
    const after = shares(await load(web, '/?ms=5', { n: 150, concurrency: 6 }));
    expect(Object.keys(after).sort()).toEqual(HOSTS);
  });

  it('drains an address removed from DNS without failing its requests in flight', async () => {
    const gone = `${HOSTS[1]}:${backends.port}`;
    // Slow requests, some of them in flight on the endpoint about to go.
    const inflight = load(web, '/?ms=800', { n: 12, concurrency: 12 });
    await eventually(
      async () => (await debugEndpoints(outbound, 'found')).find((e) => e.endpoint === gone)!.inflight > 0,
    );
    publish([HOSTS[0]!, HOSTS[2]!]);
    await eventually(
      async () => {
        const e = (await debugEndpoints(outbound, 'found')).find((x) => x.endpoint === gone);
        return e?.state === 'draining'; // listed, with its state, until its work in flight is done
      },
      10_000,
      'removed',
    );
    // New work never goes to it once it drains.
    const during = shares(await load(web, '/', { n: 30, concurrency: 3 }));
    expect(during[HOSTS[1]!]).toBeUndefined();
    const results = await inflight;
    expect(results.filter((r) => r.status !== 200)).toEqual([]);
    expect(shares(results)[HOSTS[1]!]).toBeGreaterThan(0);
    await eventually(
      async () => !(await debugEndpoints(outbound, 'found')).some((e) => e.endpoint === gone),
      10_000,
      'closed',
    );
  });
});
