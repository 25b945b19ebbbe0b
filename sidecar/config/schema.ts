/**
 * The sidecar's configuration types and its schema with every default. Every limit and timeout is here, with a safe
 * default; `docs/SIDECAR.md` documents each key.
 */
import os from 'node:os';
import type { PluginConfig } from '../policy/authz.js';
import { address, bool, int, ms, name, object, PORT, type Schema, str } from './validate.js';
export interface TlsConfig {
  enabled: boolean;
  caFile?: string;
  certFile?: string;
  keyFile?: string;
  servername?: string;
  rejectUnauthorized: boolean;
  requestCert: boolean;
}
export interface UpstreamConfig {
  address: string;
  tls: TlsConfig;
  reconnect: { minDelayMs: number; maxDelayMs: number; jitter: number };
  handshakeTimeoutMs: number;
  heartbeatIntervalMs: number;
  streamOpenTimeoutMs: number;
  maxStreams: number;
  /** Serve streams the peer opens on this connection (the NAT'd side of a reverse tunnel). */
  serve: boolean;
  /** A token sent in the End meta ({"name", "token"}) for the far side's `token` plugin; or read from tokenFile. */
  token?: string;
  tokenFile?: string;
}
export interface HttpOutboundConfig {
  name: string;
  listen: string;
  upstream: string;
  service: string;
  maxStreams: number;
  keepAliveTimeoutMs: number;
  headersTimeoutMs: number;
  bodyTimeoutMs: number;
  retries: number;
  rpc: { enabled: boolean; timeoutMs: number; maxBodyBytes: number };
  publish: { enabled: boolean; timeoutMs: number; maxBodyBytes: number };
}
export interface TcpOutboundConfig {
  name: string;
  listen: string;
  upstream: string;
  service: string;
}
export interface ServiceConfig {
  /** `http://host:port` or `tcp://host:port`. */
  target: string;
  maxConnections: number;
  connectTimeoutMs: number;
  headersTimeoutMs: number;
  bodyTimeoutMs: number;
}
export interface InboundConfig {
  listen: string;
  tls: TlsConfig;
  maxPendingEnds: number;
  keepAliveTimeoutMs: number;
  rpc: Record<string, { url: string; timeoutMs: number; maxBodyBytes: number }>;
  messages?: { webhook: string; timeoutMs: number; concurrency: number };
  /**
   * Announced names reserved for some ClientIDs: an End announcing one with another ClientID is refused, and the
   * ClientIDs listed may hold it at the same time. A name not listed is held by the first End announcing it.
   */
  names: Record<string, { clientIds: string[] }>;
}
export interface TunnelConfig {
  name: string;
  listen: string;
  /** The name the client announced in its meta ({"name": ...}); or use clientId. */
  client?: string;
  clientId?: string;
  service: string;
  protocol: 'tcp' | 'http';
}
/**
 * Limits of every HTTP server the sidecar runs (outbound listeners, HTTP tunnels, the per-service servers of the
 * inbound side): a client that breaks them gets 408 / 431 and `connection: close`.
 */
export interface HttpServerConfig {
  /** The whole request head must arrive within this (slowloris): 408. */
  headersTimeoutMs: number;
  /** A request body that sends nothing for this long: 408 (time spent paused by backpressure does not count). */
  bodyIdleTimeoutMs: number;
  /** Total size of a request head: 431 beyond. */
  maxHeaderBytes: number;
  /** Number of request header lines: 431 beyond. */
  maxHeaders: number;
  /** Client connections open at once per listener; further ones are closed at accept. */
  maxConnections: number;
}
/** The access log: one line per HTTP exchange (and per request refused by the parser or the limits). */
export interface AccessLogConfig {
  enabled: boolean;
  /** The optional fields written (all when empty); method, path, status and durationMs are always there. */
  fields: AccessLogField[];
  /** Query strings are written as `?REDACTED` unless this is false (tokens in URLs stay out of logs). */
  redactQuery: boolean;
  /** The share of successful exchanges logged (0..1); errors (status >= 400) and refusals are always logged. */
  sampleRatio: number;
}
export const ACCESS_LOG_FIELDS = [
  'listener',
  'direction',
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
export type AccessLogField = (typeof ACCESS_LOG_FIELDS)[number];
/** OpenTelemetry tracing (off by default): spans exported over OTLP/HTTP. */
export interface TracingConfig {
  enabled: boolean;
  /** The OTLP/HTTP traces URL, e.g. http://collector:4318/v1/traces. */
  endpoint: string;
  /** service.name of the spans (default: the sidecar's name). */
  serviceName?: string;
  /** The share of new traces sampled (0..1); a request with a sampled parent follows its parent when parentBased. */
  sampleRatio: number;
  parentBased: boolean;
  maxQueueSize: number;
  maxExportBatchSize: number;
  scheduledDelayMs: number;
  exportTimeoutMs: number;
}
export interface SidecarConfig {
  /** Announced to upstreams in the End meta as {"name": ...}; tunnels find a client by it. */
  name: string;
  admin: { listen: string };
  log: { level: string; format: 'auto' | 'json' | 'pretty' };
  accessLog: AccessLogConfig;
  tracing: TracingConfig;
  shutdown: { gracePeriodMs: number };
  hooks: { timeoutMs: number };
  httpServer: HttpServerConfig;
  upstreams: Record<string, UpstreamConfig>;
  outbound: { http: HttpOutboundConfig[]; tcp: TcpOutboundConfig[] };
  inbound?: InboundConfig;
  services: Record<string, ServiceConfig>;
  tunnels: TunnelConfig[];
  /** Authorization plugins, asked in order (see docs/PLUGINS.md). */
  plugins: PluginConfig[];
  /** Reload on a change in the directories of the config file and the files it names (besides SIGHUP). */
  reload: { watchFiles: boolean };
  /**
   * The directory of the config file (plugin paths and files resolve against it). Set by withConfigDir, never
   * read from the file; not enumerable, so a config spread or serialized for a reload does not carry it.
   */
  configDir?: string;
}

const MiB = 1024 * 1024;
const NAME_KEY = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;
const httpUrl: Schema = {
  kind: 'string',
  pattern: /^https?:\/\/[^/\s]+(\/\S*)?$/,
  expected: 'a URL http://host:port/path',
};

const clientIdSchema: Schema = {
  kind: 'string',
  pattern: /^[1-9]\d{0,19}$/,
  expected: 'a ClientID in decimal',
};

const tls = object({
  enabled: bool(false),
  caFile: str({ optional: true }),
  certFile: str({ optional: true }),
  keyFile: str({ optional: true }),
  servername: str({ optional: true }),
  rejectUnauthorized: bool(true),
  requestCert: bool(false),
});

/** The whole schema. Defaults here are the documented defaults. */
export const schema: Schema = object({
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
  accessLog: object({
    enabled: bool(true),
    fields: { kind: 'array', items: { kind: 'enum', values: ACCESS_LOG_FIELDS } },
    redactQuery: bool(true),
    sampleRatio: { kind: 'number', default: 1, min: 0, max: 1 },
  }),
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
  upstreams: {
    kind: 'map',
    keyPattern: NAME_KEY,
    values: object({
      address: address(),
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
        pattern: new RegExp(`^(http|tcp)://[^/\\s]+:${PORT}/?$`),
        expected: 'http://host:port or tcp://host:port',
      },
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
