/**
 * The sidecar's configuration schema with every default, and the types inferred from it (so the types cannot drift
 * from what is validated). Every limit and timeout is here, with a safe default; `docs/SIDECAR.md` documents each
 * key.
 */
import os from 'node:os';
import { address, bool, type Infer, int, ms, name, object, PORT, str } from './validate.js';

const MiB = 1024 * 1024;
const NAME_KEY = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;
const httpUrl = {
  kind: 'string',
  pattern: /^https?:\/\/[^/\s]+(\/\S*)?$/,
  expected: 'a URL http://host:port/path',
} as const;

const clientIdSchema = {
  kind: 'string',
  pattern: /^[1-9]\d{0,19}$/,
  expected: 'a ClientID in decimal',
} as const;

const tls = object({
  enabled: bool(false),
  caFile: str({ optional: true }),
  certFile: str({ optional: true }),
  keyFile: str({ optional: true }),
  servername: str({ optional: true }),
  rejectUnauthorized: bool(true),
  requestCert: bool(false),
});

// TLS to an h2:// service target (HTTP/2 over TLS to the app): the CA that verifies the app's certificate (the
// system CAs when absent), the name it is checked against (the target's host when absent), a client certificate.
const targetTls = object({
  caFile: str({ optional: true }),
  certFile: str({ optional: true }),
  keyFile: str({ optional: true }),
  servername: str({ optional: true }),
  rejectUnauthorized: bool(true),
});

/** The optional fields of an access line (method, path, status and durationMs are always written). */
export const ACCESS_LOG_FIELDS = [
  'listener',
  'direction',
  'protocol',
  'grpcStatus',
  'service',
  'upstream',
  'clientId',
  'streamId',
  'requestId',
  'traceId',
  'spanId',
  'peer',
  'host',
  'userAgent',
  'bytesIn',
  'bytesOut',
  'completed',
] as const;

/** The whole schema. Defaults here are the documented defaults. */
export const schema = object({
  name: { kind: 'string', default: os.hostname(), pattern: /^\S{1,128}$/, expected: 'a name without spaces' },
  admin: object({ listen: address({ default: '127.0.0.1:9901' }) }),
  log: object({
    level: {
      kind: 'enum',
      values: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'],
      default: 'info',
    },
    format: { kind: 'enum', values: ['auto', 'json', 'pretty'], default: 'auto' },
  }),
  // The access log: one line per HTTP exchange and per request refused by the parser or the limits; `fields`
  // empty means all; errors (>= 400) and refusals are always written, `sampleRatio` thins the rest.
  accessLog: object({
    enabled: bool(true),
    fields: { kind: 'array', items: { kind: 'enum', values: ACCESS_LOG_FIELDS } },
    redactQuery: bool(true),
    sampleRatio: { kind: 'number', default: 1, min: 0, max: 1 },
  }),
  // OpenTelemetry tracing, off by default: spans over OTLP/HTTP to `endpoint` (docs/SIDECAR.md, "Tracing").
  tracing: object({
    enabled: bool(false),
    endpoint: { ...httpUrl, default: 'http://127.0.0.1:4318/v1/traces' },
    serviceName: str({ optional: true }),
    sampleRatio: { kind: 'number', default: 1, min: 0, max: 1 },
    parentBased: bool(true),
    maxQueueSize: int(2048, 1, 1_000_000),
    maxExportBatchSize: int(512, 1, 100_000),
    scheduledDelayMs: ms(5_000),
    exportTimeoutMs: ms(10_000),
  }),
  shutdown: object({ gracePeriodMs: ms(10_000, 0) }),
  // After work (requests, connections, calls) has stopped for idleGcMs, two full GCs give the heap grown under load
  // back (V8 alone does it only ~100 s later, on an idle process); 0: never.
  memory: object({ idleGcMs: ms(20_000, 0) }),
  hooks: object({ timeoutMs: ms(1_000) }),
  reload: object({ watchFiles: bool(true) }),
  // Limits of every HTTP server the sidecar runs (nginx-like: 32 KiB of head as its 4 x 8k buffers; 100 header
  // lines as Apache's LimitRequestFields, nginx has no count of its own).
  httpServer: object({
    headersTimeoutMs: ms(30_000),
    bodyIdleTimeoutMs: ms(30_000),
    maxHeaderBytes: int(32 * 1024, 1024, 1024 * 1024),
    maxHeaders: int(100, 8, 10_000),
    maxConnections: int(1024, 1, 1_000_000),
  }),
  // HTTP/2 limits of the outbound listeners (h2c, h2) and the sessions to h2c:// and h2:// targets (issue 16):
  // nghttp2's and Go's usual values (100 streams, 64 KiB windows), headers as httpServer. A peer over them gets the
  // HTTP/2 error nghttp2 gives (REFUSED_STREAM, ENHANCE_YOUR_CALM, a GOAWAY), never an outage.
  http2: object({
    maxConcurrentStreams: int(100, 1, 10_000),
    maxHeaderListBytes: int(32 * 1024, 1024, 1024 * 1024),
    maxHeaders: int(100, 8, 10_000),
    initialWindowBytes: int(65_535, 1024, 2 ** 31 - 1),
    maxSessionMemoryMiB: int(10, 1, 1024),
  }),
  upstreams: {
    kind: 'map',
    keyPattern: NAME_KEY,
    values: object({
      // Exactly one of address (one endpoint), endpoints (a static list) or discovery (DNS); see load.ts.
      address: address({ optional: true }),
      endpoints: { kind: 'array', items: address(), optional: true },
      // DNS discovery: every A/AAAA record of `name`, looked up again every refreshMs or sooner when the shortest
      // TTL ends first (never sooner than minRefreshMs); at most maxEndpoints (bounds Ends and metric labels).
      discovery: object(
        {
          name: { kind: 'string', pattern: /^[A-Za-z0-9_.-]{1,253}$/, expected: 'a DNS name' },
          port: { kind: 'int', min: 1, max: 65_535 },
          resolver: address({ optional: true }),
          refreshMs: ms(5_000, 100),
          minRefreshMs: ms(1_000, 10),
          maxEndpoints: int(64, 1, 1_000),
        },
        true,
      ),
      // Balancing across the endpoints and ejecting failing ones (docs/SIDECAR.md, "Endpoints and balancing").
      balancing: object({
        minReady: int(1, 0, 1_000),
        ejectAfter: int(5, 1, 1_000),
        ejectBaseMs: ms(1_000),
        ejectMaxMs: ms(30_000),
        ewmaDecayMs: ms(10_000),
        drainMs: ms(10_000, 0),
      }),
      tls,
      reconnect: object({
        minDelayMs: ms(100),
        maxDelayMs: ms(5_000),
        jitter: { kind: 'number', default: 0.2, min: 0, max: 1 },
      }),
      handshakeTimeoutMs: ms(10_000),
      heartbeatIntervalMs: { kind: 'int', default: 20_000, min: 1, max: 320_000 },
      streamOpenTimeoutMs: ms(10_000),
      maxStreams: int(4096, 1, 1_000_000),
      serve: bool(false),
      token: str({ optional: true }),
      tokenFile: str({ optional: true }),
    }),
  },
  outbound: object({
    http: {
      kind: 'array',
      items: object({
        name: name(),
        listen: address(),
        upstream: name(),
        service: name(),
        maxStreams: int(256, 1, 100_000),
        keepAliveTimeoutMs: ms(60_000),
        headersTimeoutMs: ms(30_000),
        bodyTimeoutMs: ms(60_000),
        retries: int(1, 0, 10),
        rpc: object({
          enabled: bool(true),
          timeoutMs: ms(30_000),
          maxBodyBytes: int(4 * MiB, 0, 1024 * MiB),
        }),
        publish: object({
          enabled: bool(true),
          timeoutMs: ms(30_000),
          maxBodyBytes: int(4 * MiB, 0, 1024 * MiB),
        }),
        // TLS on the listener: HTTP/2 (h2) and HTTP/1.1 by ALPN on the port; off: plaintext, h2c by its preface.
        tls,
      }),
    },
    tcp: {
      kind: 'array',
      items: object({ name: name(), listen: address(), upstream: name(), service: name() }),
    },
  }),
  inbound: object(
    {
      listen: address({ default: '127.0.0.1:7001' }),
      tls,
      maxPendingEnds: int(1024, 1, 1_000_000),
      keepAliveTimeoutMs: ms(65_000),
      rpc: {
        kind: 'map',
        keyPattern: /^\S{1,256}$/,
        values: object({ url: httpUrl, timeoutMs: ms(30_000), maxBodyBytes: int(4 * MiB, 0, 1024 * MiB) }),
      },
      messages: object({ webhook: httpUrl, timeoutMs: ms(10_000), concurrency: int(16, 1, 10_000) }, true),
      names: {
        kind: 'map',
        keyPattern: /^\S{1,256}$/,
        values: object({ clientIds: { kind: 'array', items: clientIdSchema } }),
      },
    },
    true,
  ),
  services: {
    kind: 'map',
    keyPattern: NAME_KEY,
    values: object({
      target: {
        kind: 'string',
        pattern: new RegExp(`^(http|h2c|h2|tcp)://[^/\\s]+:${PORT}/?$`),
        expected: 'http://host:port, h2c://host:port, h2://host:port or tcp://host:port',
      },
      tls: targetTls,
      maxConnections: int(256, 1, 100_000),
      connectTimeoutMs: ms(10_000),
      headersTimeoutMs: ms(30_000),
      bodyTimeoutMs: ms(60_000),
    }),
  },
  tunnels: {
    kind: 'array',
    items: object({
      name: name(),
      listen: address(),
      client: str({ optional: true }),
      clientId: { ...clientIdSchema, optional: true },
      service: name(),
      protocol: { kind: 'enum', values: ['tcp', 'http'], default: 'tcp' },
    }),
  },
  plugins: {
    kind: 'array',
    items: object({
      path: {
        kind: 'string',
        pattern: /\S/,
        expected: 'a plugin file (relative to the config file) or builtin:<name>',
      },
      options: { kind: 'mapping' },
      timeoutMs: ms(200),
    }),
  },
});

/** The whole configuration, as validate() returns it from `schema`. */
export type SidecarConfig = Infer<typeof schema> & {
  /**
   * The directory of the config file (plugin paths and files resolve against it). Set by withConfigDir, never
   * read from the file; not enumerable, so a config spread or serialized for a reload does not carry it.
   */
  configDir?: string;
};
/** TLS of an upstream (client side), or of the inbound listener or an outbound HTTP listener (server side). */
export type TlsConfig = Infer<typeof tls>;
/** One upstream: a reconnecting client End. `serve` serves the streams the peer opens (a reverse tunnel). */
export type UpstreamConfig = SidecarConfig['upstreams'][string];
/** DNS discovery of an upstream's endpoints. */
export type DiscoveryConfig = NonNullable<UpstreamConfig['discovery']>;
/** Balancing across an upstream's endpoints, and ejecting the failing ones. */
export type BalancingConfig = UpstreamConfig['balancing'];
export type HttpOutboundConfig = SidecarConfig['outbound']['http'][number];
export type TcpOutboundConfig = SidecarConfig['outbound']['tcp'][number];
/**
 * One service of the inbound side; `target` is `http://host:port`, `h2c://host:port`, `h2://host:port` (HTTP/2
 * over TLS, verified with `tls`) or `tcp://host:port`.
 */
export type ServiceConfig = SidecarConfig['services'][string];
/** TLS to an h2:// target. */
export type TargetTlsConfig = ServiceConfig['tls'];
/**
 * The inbound listener. `names`: announced names reserved for some ClientIDs (an End announcing one with another
 * ClientID is refused; the ClientIDs listed may hold it at the same time).
 */
export type InboundConfig = NonNullable<SidecarConfig['inbound']>;
/** A reverse tunnel: `client` is the name the client announced (or use `clientId`). */
export type TunnelConfig = SidecarConfig['tunnels'][number];
/**
 * Limits of every HTTP server the sidecar runs (outbound listeners, HTTP tunnels, the per-service servers of the
 * inbound side): a client that breaks them gets 408 / 431 and `connection: close`.
 */
export type HttpServerConfig = SidecarConfig['httpServer'];
/** HTTP/2 limits (see `http2` in the schema). */
export type Http2Config = SidecarConfig['http2'];
/** The access log section. */
export type AccessLogConfig = SidecarConfig['accessLog'];
export type AccessLogField = (typeof ACCESS_LOG_FIELDS)[number];
/** OpenTelemetry tracing (off by default). */
export type TracingConfig = SidecarConfig['tracing'];
/** One `plugins` entry of the config; `path` is absolute (or `builtin:<name>`) once the config is loaded. */
export type PluginConfig = SidecarConfig['plugins'][number];
