/** The config schema: defaults, error messages that name key, value and expectation, overrides. */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import {
  applyOverrides,
  ConfigError,
  envOverrides,
  loadConfig,
  parseConfig,
} from '../../../sidecar/config/load.js';
import { formatProblem } from '../../../sidecar/config/validate.js';
import { Metrics } from '../../../sidecar/observe/metrics.js';
import { ErrorCode } from '../../../sidecar/proxy/http-util.js';

function problems(raw: unknown): string[] {
  try {
    parseConfig(raw);
  } catch (err) {
    if (err instanceof ConfigError) return err.problems.map(formatProblem);
    throw err;
  }
  return [];
}

describe('sidecar config', () => {
  it('httpServer: the limits of every HTTP server, with safe defaults; a bad one names its key', () => {
    expect(parseConfig({}).httpServer).toEqual({
      headersTimeoutMs: 30_000,
      bodyIdleTimeoutMs: 30_000,
      maxHeaderBytes: 32 * 1024,
      maxHeaders: 100,
      maxConnections: 1024,
    });
    const err = (() => {
      try {
        parseConfig({ httpServer: { maxHeaders: 0, headersTimeoutMs: 'soon' } });
      } catch (e) {
        return e as ConfigError;
      }
    })();
    expect(err).toBeInstanceOf(ConfigError);
    expect(err!.problems.map((p) => p.path).sort()).toEqual([
      'httpServer.headersTimeoutMs',
      'httpServer.maxHeaders',
    ]);
  });

  it('an empty config is valid and every default is filled in', () => {
    const c = parseConfig({});
    expect(c.admin.listen).toBe('127.0.0.1:9901');
    expect(c.log).toEqual({ level: 'info', format: 'auto' });
    expect(c.shutdown.gracePeriodMs).toBe(10_000);
    expect(c.inbound).toBeUndefined();
    const full = parseConfig({
      upstreams: { up: { address: 'h:1' } },
      outbound: { http: [{ name: 'w', listen: ':8080', upstream: 'up', service: 's' }] },
      inbound: {},
    });
    expect(full.upstreams.up!.reconnect).toEqual({ minDelayMs: 100, maxDelayMs: 5000, jitter: 0.2 });
    expect(full.outbound.http[0]!.rpc).toEqual({
      enabled: true,
      timeoutMs: 30_000,
      maxBodyBytes: 4 * 1024 * 1024,
    });
    expect(full.inbound!.listen).toBe('127.0.0.1:7001');
  });

  it('names the key path, the value and what was expected', () => {
    expect(
      problems({
        log: { level: 'loud' },
        upstreams: { 'bad name': { address: 'x' } },
        outbound: { tcp: [{ name: 't', listen: '1.2.3.4:99999999', upstream: 'u', service: 's' }] },
        services: { s: { target: 'ftp://h:1' } },
        tunnels: 'no',
      }),
    ).toEqual([
      'log.level: got "loud", expected one of fatal, error, warn, info, debug, trace, silent',
      'upstreams.bad name: got "bad name", expected a name matching /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/',
      'upstreams.bad name.address: got "x", expected an address host:port with a port from 0 to 65535 (e.g. 127.0.0.1:8080)',
      'outbound.tcp[0].listen: got "1.2.3.4:99999999", expected an address host:port with a port from 0 to 65535 (e.g. 127.0.0.1:8080)',
      'services.s.target: got "ftp://h:1", expected http://host:port, h2c://host:port, h2://host:port or tcp://host:port',
      'tunnels: got "no", expected a list',
      // In the same round: the reference to an upstream that is not there.
      'outbound.tcp[0].upstream: got "u", expected an upstream name (bad name)',
    ]);
  });

  it('cross-key checks: references, duplicates, address clashes, tunnels', () => {
    expect(
      problems({
        upstreams: { up: { address: 'h:1', reconnect: { minDelayMs: 500, maxDelayMs: 100 } } },
        outbound: {
          http: [{ name: 'a', listen: ':8080', upstream: 'nope', service: 's' }],
          tcp: [{ name: 'a', listen: ':8080', upstream: 'up', service: 's' }],
        },
        tunnels: [{ name: 't', listen: ':9', service: 's' }],
      }),
    ).toEqual([
      'outbound.http[0].upstream: got "nope", expected an upstream name (up)',
      'outbound.tcp[0].name: got "a", expected a unique listener name',
      'outbound.tcp[0].listen: got ":8080", expected an address not already used by outbound.http[0].listen',
      'tunnels[0]: got {"name":"t","listen":":9","service":"s","protocol":"tcp"}, expected exactly one of client or clientId',
      'tunnels[0]: got "t", expected an inbound section',
      'upstreams.up.reconnect.maxDelayMs: got 100, expected a delay >= minDelayMs',
    ]);
  });

  it('an upstream is exactly one of address, endpoints or discovery; discovery needs a port', () => {
    expect(
      problems({
        upstreams: {
          both: { address: 'h:1', endpoints: ['h:2'] },
          none: {},
          empty: { endpoints: [] },
          dns: { discovery: { name: 'svc.local', resolver: 'nope' } },
          ok: { endpoints: ['a:1', 'b:1'], balancing: { minReady: 2 } },
        },
      }),
    ).toEqual([
      'upstreams.dns.discovery.port: got nothing, expected a value (an integer from 1 to 65535)',
      'upstreams.dns.discovery.resolver: got "nope", expected an address host:port with a port from 0 to 65535 (e.g. 127.0.0.1:8080)',
      'upstreams.both: got "both", expected exactly one of address, endpoints or discovery',
      'upstreams.none: got "none", expected exactly one of address, endpoints or discovery',
      'upstreams.empty.endpoints: got [], expected at least one host:port',
    ]);
  });

  it('schema and cross-key problems come in one round; ports in range; strict integers; no configDir', () => {
    expect(
      problems({
        admin: { listen: '127.0.0.1:99999' },
        configDir: '/etc',
        shutdown: { gracePeriodMs: '0x10' },
        upstreams: { up: { address: 'h:65536', maxStreams: '1e3' } },
        outbound: { http: [{ name: 'w', listen: ':8080', upstream: 'nope', service: 's' }] },
        inbound: { tls: { enabled: true, certFile: 'c.pem' } },
        services: { s: { target: 'http://h:70000' } },
      }),
    ).toEqual([
      'configDir: got "/etc", expected no such key (one of: name, admin, log, accessLog, tracing, shutdown, memory, hooks, reload, httpServer, http2, upstreams, outbound, inbound, services, tunnels, plugins)',
      'admin.listen: got "127.0.0.1:99999", expected an address host:port with a port from 0 to 65535 (e.g. 127.0.0.1:8080)',
      'shutdown.gracePeriodMs: got "0x10", expected an integer from 0 to 86400000',
      'upstreams.up.address: got "h:65536", expected an address host:port with a port from 0 to 65535 (e.g. 127.0.0.1:8080)',
      'upstreams.up.maxStreams: got "1e3", expected an integer from 1 to 1000000',
      'services.s.target: got "http://h:70000", expected http://host:port, h2c://host:port, h2://host:port or tcp://host:port',
      'outbound.http[0].upstream: got "nope", expected an upstream name (up)',
      'inbound.tls: got {"certFile":"c.pem"}, expected certFile and keyFile when enabled (a TLS server needs both)',
    ]);
    // Decimal strings (from the environment and flags) are still numbers.
    expect(parseConfig({ shutdown: { gracePeriodMs: '16' } }).shutdown.gracePeriodMs).toBe(16);
    // The config directory is kept off the config itself: a loaded config spreads and validates again.
    const loaded = loadConfig(undefined, {});
    expect(loaded.configDir).toBe(process.cwd());
    expect(() => parseConfig({ ...loaded })).not.toThrow();
  });

  it('TLS of an outbound HTTP listener needs its certificate and key; target TLS only with h2://', () => {
    expect(
      problems({
        upstreams: { up: { address: 'h:1' } },
        outbound: {
          http: [
            {
              name: 'w',
              listen: ':8080',
              upstream: 'up',
              service: 's',
              tls: { enabled: true, keyFile: 'k.pem' },
            },
            { name: 'v', listen: ':8081', upstream: 'up', service: 's', tls: { enabled: false } },
          ],
        },
        services: {
          s: { target: 'h2://h:1', tls: { caFile: 'ca.pem', servername: 'app.local' } },
          c: { target: 'h2c://h:1', tls: { caFile: 'ca.pem' } },
          k: { target: 'h2://h:1', tls: { certFile: 'c.pem' } },
        },
      }),
    ).toEqual([
      'outbound.http[0].tls: got {"keyFile":"k.pem"}, expected certFile and keyFile when enabled (a TLS server needs both)',
      'services.c.tls: got {"caFile":"ca.pem","rejectUnauthorized":true}, expected no TLS files or servername (only an h2:// target uses them)',
      'services.k.tls: got {"certFile":"c.pem"}, expected both certFile and keyFile, or neither',
    ]);
    const c = parseConfig({
      upstreams: { up: { address: 'h:1' } },
      outbound: { http: [{ name: 'w', listen: ':8080', upstream: 'up', service: 's' }] },
    });
    expect(c.outbound.http[0]!.tls).toEqual({ enabled: false, rejectUnauthorized: true, requestCert: false });
  });

  it('a problem set by an override names the environment variable or flag, not the file', () => {
    let err: unknown;
    try {
      loadConfig(undefined, {
        env: { GEMINIO_SIDECAR_ADMIN_PORT: 'x', GEMINIO_SIDECAR__outbound__http__0__listen: 'nowhere' },
        flags: [[['log', 'level'], 'loud', 'flag --log-level']],
      });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    const lines = (err as ConfigError).problems.map(formatProblem);
    expect(lines).toContain(
      'admin.listen: got "127.0.0.1:x", expected an address host:port with a port from 0 to 65535 (e.g. 127.0.0.1:8080) (set by environment variable GEMINIO_SIDECAR_ADMIN_PORT)',
    );
    expect(lines).toContain(
      'log.level: got "loud", expected one of fatal, error, warn, info, debug, trace, silent (set by flag --log-level)',
    );
    expect(lines.find((l) => l.startsWith('outbound.http[0].listen'))).toContain(
      '(set by environment variable GEMINIO_SIDECAR__outbound__http__0__listen)',
    );
    // Keys the overrides did not touch name no source.
    expect(lines.find((l) => l.startsWith('outbound.http[0].name'))).not.toContain('set by');
  });

  it('environment overrides: shortcuts and the generic GEMINIO_SIDECAR__a__b scheme, with lists', () => {
    const env = {
      GEMINIO_SIDECAR_ADMIN_PORT: '9999',
      GEMINIO_SIDECAR_LOG_LEVEL: 'debug',
      GEMINIO_SIDECAR__upstreams__up__address: 'far:7001',
      GEMINIO_SIDECAR__upstreams__up__serve: 'true',
      GEMINIO_SIDECAR__outbound__http__0__name: 'web',
      GEMINIO_SIDECAR__outbound__http__0__listen: ':8080',
      GEMINIO_SIDECAR__outbound__http__0__upstream: 'up',
      GEMINIO_SIDECAR__outbound__http__0__service: 'app',
      GEMINIO_SIDECAR__outbound__http__0__retries: '3',
    };
    const c = loadConfig(undefined, { env });
    expect(c.admin.listen).toBe('127.0.0.1:9999');
    expect(c.log.level).toBe('debug');
    expect(c.upstreams.up).toMatchObject({ address: 'far:7001', serve: true });
    expect(c.outbound.http[0]).toMatchObject({ name: 'web', listen: ':8080', retries: 3 });
    expect(envOverrides({ OTHER: 'x' })).toEqual([]);
    // Flags come after the environment and win.
    const raw: Record<string, unknown> = { admin: { listen: '0.0.0.0:1' } };
    applyOverrides(raw, [[['admin', 'port'], '2']]);
    expect(raw.admin).toEqual({ listen: '0.0.0.0:2' });
  });
});

describe('docs stay in step with the code', () => {
  const docs = readFileSync(new URL('../../../docs/SIDECAR.md', import.meta.url), 'utf8');

  it('deploy/sidecar.example.yaml is a valid config', () => {
    const c = loadConfig(fileURLToPath(new URL('../../../deploy/sidecar.example.yaml', import.meta.url)));
    expect(c.outbound.http[0]!.name).toBe('web');
    expect(c.tunnels[0]!.protocol).toBe('http');
  });

  it('docs/SIDECAR.md lists every metric and every error code', async () => {
    const names = (await new Metrics({ defaults: false }).registry.getMetricsAsJSON()).map((m) => m.name);
    expect(names.length).toBeGreaterThan(15);
    for (const n of names) expect(docs, n).toContain(`\`${n}\``);
    for (const code of Object.values(ErrorCode)) expect(docs, code).toContain(`\`${code}\``);
  });
});
