/**
 * Every Prometheus metric of the sidecar, in its own Registry (so tests and several sidecars in one process never
 * collide). Label values are bounded: listener, upstream and service names come from the config, methods from a
 * fixed list or from what the peer registered, statuses are HTTP codes; nothing user-supplied (paths, topics) is
 * ever a label. docs/SIDECAR.md lists every metric with its labels.
 */
import * as diagnostics from 'node:diagnostics_channel';
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import { CHANNELS, type Stream, type StreamBytesMessage, type StreamCloseMessage } from '../../sdk/index.js';
import { CounterSeries, GaugeSeries, HistogramSeries } from './series.js';
import { SIDECAR_VERSION } from './version.js';

export type Direction = 'outbound' | 'inbound' | 'tunnel';

/** The per-endpoint series of an upstream that each unit of work updates. */
export interface EndpointSeries {
  inflight: GaugeSeries;
  latency: GaugeSeries;
  ejections: CounterSeries;
  requests: Record<'ok' | 'failed' | 'other', CounterSeries>;
}

interface ByteTally {
  direction: Direction;
  service: string;
  rx: number;
  tx: number;
}

const LATENCY_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];
const SIZE_BUCKETS = [0, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216];
const HTTP_METHODS = new Set([
  'GET',
  'HEAD',
  'POST',
  'PUT',
  'DELETE',
  'PATCH',
  'OPTIONS',
  'CONNECT',
  'TRACE',
]);

/** The HTTP method as a bounded label value. */
export function methodLabel(method: string | undefined): string {
  return method && HTTP_METHODS.has(method) ? method : 'OTHER';
}

export class Metrics {
  readonly registry = new Registry();
  readonly upstreamConnected = new Gauge({
    name: 'geminio_upstream_connected',
    help: '1 while the upstream End is connected, 0 while connecting or reconnecting',
    labelNames: ['upstream'],
    registers: [this.registry],
  });
  readonly upstreamReconnects = new Counter({
    name: 'geminio_upstream_reconnects_total',
    help: 'Times an upstream End reconnected after losing its connection',
    labelNames: ['upstream'],
    registers: [this.registry],
  });
  readonly upstreamDisconnects = new Counter({
    name: 'geminio_upstream_disconnects_total',
    help: 'Times an upstream End lost its connection',
    labelNames: ['upstream'],
    registers: [this.registry],
  });
  readonly upstreamDialFailures = new Counter({
    name: 'geminio_upstream_dial_failures_total',
    help: 'Failed first dials of an upstream (retried in the background)',
    labelNames: ['upstream'],
    registers: [this.registry],
  });
  // Per endpoint of an upstream (issue 15). The endpoint label is the endpoint's host:port; the series of an
  // endpoint that goes away are removed (forgetEndpoint), and discovery keeps at most maxEndpoints, so the label
  // set stays bounded by the live endpoints.
  readonly endpointConnected = new Gauge({
    name: 'geminio_upstream_endpoint_connected',
    help: '1 while the End to this endpoint of the upstream is connected',
    labelNames: ['upstream', 'endpoint'],
    registers: [this.registry],
  });
  readonly endpointInflight = new Gauge({
    name: 'geminio_upstream_endpoint_inflight',
    help: 'Units of work (requests, calls, messages, TCP connections) in flight on this endpoint',
    labelNames: ['upstream', 'endpoint'],
    registers: [this.registry],
  });
  readonly endpointRequests = new Counter({
    name: 'geminio_upstream_endpoint_requests_total',
    help: 'Units of work the balancer sent to this endpoint, by outcome (ok, failed, other)',
    labelNames: ['upstream', 'endpoint', 'outcome'],
    registers: [this.registry],
  });
  readonly endpointEjections = new Counter({
    name: 'geminio_upstream_endpoint_ejections_total',
    help: 'Times this endpoint was ejected after consecutive failures',
    labelNames: ['upstream', 'endpoint'],
    registers: [this.registry],
  });
  readonly endpointLatency = new Gauge({
    name: 'geminio_upstream_endpoint_latency_ewma_seconds',
    help: 'The balancer latency EWMA of this endpoint (peak-sensitive)',
    labelNames: ['upstream', 'endpoint'],
    registers: [this.registry],
  });

  /** The series a unit of work on an endpoint updates, bound once (observe/series.ts). */
  endpointSeries(labels: { upstream: string; endpoint: string }): EndpointSeries {
    const { upstream, endpoint } = labels;
    const requests = (outcome: string) =>
      new CounterSeries(this.endpointRequests, { upstream, endpoint, outcome });
    return {
      inflight: new GaugeSeries(this.endpointInflight, { upstream, endpoint }),
      latency: new GaugeSeries(this.endpointLatency, { upstream, endpoint }),
      ejections: new CounterSeries(this.endpointEjections, { upstream, endpoint }),
      requests: { ok: requests('ok'), failed: requests('failed'), other: requests('other') },
    };
  }

  /** Removes the series of an endpoint that went away. */
  forgetEndpoint(labels: { upstream: string; endpoint: string }): void {
    for (const g of [
      this.endpointConnected,
      this.endpointInflight,
      this.endpointEjections,
      this.endpointLatency,
    ]) {
      g.remove(labels);
    }
    for (const outcome of ['ok', 'failed', 'other']) this.endpointRequests.remove({ ...labels, outcome });
  }

  readonly inboundEnds = new Gauge({
    name: 'geminio_inbound_ends',
    help: 'Ends connected to the inbound geminio listener',
    registers: [this.registry],
  });
  readonly inboundNameRefusals = new Counter({
    name: 'geminio_inbound_name_refusals_total',
    help: 'Connections refused because the name they announced is held by another End or reserved for other ClientIDs',
    registers: [this.registry],
  });
  readonly streamsOpened = new Counter({
    name: 'geminio_streams_opened_total',
    help: 'Streams opened (outbound, tunnel) or accepted (inbound), by service',
    labelNames: ['direction', 'service'],
    registers: [this.registry],
  });
  readonly streamsClosed = new Counter({
    name: 'geminio_streams_closed_total',
    help: 'Streams closed, by service',
    labelNames: ['direction', 'service'],
    registers: [this.registry],
  });
  readonly streamsOpen = new Gauge({
    name: 'geminio_streams_open',
    help: 'Streams open now, by service',
    labelNames: ['direction', 'service'],
    registers: [this.registry],
  });
  readonly streamOpenFailures = new Counter({
    name: 'geminio_stream_open_failures_total',
    help: 'Stream opens that failed (upstream down, refused, timed out)',
    labelNames: ['direction', 'service'],
    registers: [this.registry],
  });
  readonly bytes = new Counter({
    name: 'geminio_stream_bytes_total',
    help: 'Bytes carried on streams; flow is "rx" (from the peer) or "tx" (to the peer)',
    labelNames: ['direction', 'service', 'flow'],
    registers: [this.registry],
    // Streams count into plain numbers (per chunk, a prom-client inc costs more than the count); a scrape adds them.
    collect: () => this.flushBytes(),
  });
  readonly httpRequests = new Counter({
    name: 'geminio_http_requests_total',
    help: 'HTTP requests handled, by listener ("inbound" for the inbound services), service, upstream, method, status and status class',
    labelNames: ['listener', 'service', 'upstream', 'method', 'status', 'status_class'],
    registers: [this.registry],
  });
  readonly httpDuration = new Histogram({
    name: 'geminio_http_request_duration_seconds',
    help: 'Time from request to response end, by listener, service, upstream, method and status class',
    labelNames: ['listener', 'service', 'upstream', 'method', 'status_class'],
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });
  readonly httpRequestSize = new Histogram({
    name: 'geminio_http_request_size_bytes',
    help: 'Request body bytes received from the client, by listener and service',
    labelNames: ['listener', 'service'],
    buckets: SIZE_BUCKETS,
    registers: [this.registry],
  });
  readonly httpResponseSize = new Histogram({
    name: 'geminio_http_response_size_bytes',
    help: 'Response body bytes sent to the client, by listener and service',
    labelNames: ['listener', 'service'],
    buckets: SIZE_BUCKETS,
    registers: [this.registry],
  });
  readonly httpInFlight = new Gauge({
    name: 'geminio_http_requests_in_flight',
    help: 'HTTP requests being handled now, by listener and service',
    labelNames: ['listener', 'service'],
    registers: [this.registry],
  });
  readonly httpConnections = new Gauge({
    name: 'geminio_http_connections_open',
    help: 'HTTP connections (client sockets, or streams for the inbound services) open now, by listener and service',
    labelNames: ['listener', 'service'],
    registers: [this.registry],
  });
  readonly httpRetries = new Counter({
    name: 'geminio_http_retries_total',
    help: 'Idempotent requests retried after a stream failure',
    labelNames: ['listener'],
    registers: [this.registry],
  });
  readonly rpcCalls = new Counter({
    name: 'geminio_rpc_calls_total',
    help: 'RPC calls through the gateway (outbound) or to local endpoints (inbound), by method and outcome',
    labelNames: ['direction', 'method', 'outcome'],
    registers: [this.registry],
  });
  readonly rpcDuration = new Histogram({
    name: 'geminio_rpc_duration_seconds',
    help: 'RPC call latency',
    labelNames: ['direction', 'method'],
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });
  readonly messages = new Counter({
    name: 'geminio_messages_total',
    help: 'Messages by direction: outbound (POST /publish: acked, rejected, timeout, unavailable) and inbound (to the webhook: delivered, failed)',
    labelNames: ['direction', 'listener', 'outcome'],
    registers: [this.registry],
  });
  readonly messagesInFlight = new Gauge({
    name: 'geminio_messages_in_flight',
    help: 'Messages published and not yet acked (outbound), or at the webhook and not yet answered (inbound)',
    labelNames: ['direction'],
    registers: [this.registry],
  });
  readonly authzDecisions = new Counter({
    name: 'geminio_authz_decisions_total',
    help: 'Decisions of the hooks and authorization plugins, one per decision: by direction, hook, deciding plugin ("all" when every one allowed, "hook" for a programmatic hook) and decision (allow, deny; a failure is a deny)',
    labelNames: ['direction', 'hook', 'plugin', 'decision'],
    registers: [this.registry],
  });
  readonly handshakeFailures = new Counter({
    name: 'geminio_handshake_failures_total',
    help: 'geminio connections that never became an End, by side (inbound: accepted; upstream: dialled) and reason',
    labelNames: ['side', 'reason'],
    registers: [this.registry],
  });
  readonly buildInfo = new Gauge({
    name: 'geminio_sidecar_build_info',
    help: 'Always 1; the labels tell the sidecar version and the Node.js version running it',
    labelNames: ['version', 'node'],
    registers: [this.registry],
  });
  readonly spansDropped = new Counter({
    name: 'geminio_trace_spans_dropped_total',
    help: 'Spans not exported, by reason (queue_full: the batch queue was full; export_failed: the backend did not take them)',
    labelNames: ['reason'],
    registers: [this.registry],
  });
  readonly spansExported = new Counter({
    name: 'geminio_trace_spans_exported_total',
    help: 'Spans the OTLP backend accepted',
    registers: [this.registry],
  });
  readonly authzFailures = new Counter({
    name: 'geminio_authz_failures_total',
    help: 'Plugin hooks that failed and so denied, by hook, plugin and kind (error, invalid, timeout)',
    labelNames: ['hook', 'plugin', 'kind'],
    registers: [this.registry],
  });
  readonly reloads = new Counter({
    name: 'geminio_config_reloads_total',
    help: 'Config reloads (SIGHUP or a changed file), by outcome',
    labelNames: ['outcome'],
    registers: [this.registry],
  });
  readonly tlsReloads = new Counter({
    name: 'geminio_tls_reloads_total',
    help: 'TLS certificate, key, CA and token files read again with new contents, by what and outcome (ok, invalid)',
    labelNames: ['what', 'outcome'],
    registers: [this.registry],
  });
  readonly shutdownDropped = new Counter({
    name: 'geminio_shutdown_dropped_total',
    help: 'Work in flight (exchanges, connections, calls, deliveries) cut when a shutdown grace period ran out',
    registers: [this.registry],
  });
  // HTTP/2 and gRPC (issue 16). `protocol` is one of http/1.1, h2c; grpc_status is "0".."16" or "other".
  readonly protocolRequests = new Counter({
    name: 'geminio_http_requests_by_protocol_total',
    help: 'HTTP requests handled, by listener (or inbound service) and protocol (http/1.1, h2c)',
    labelNames: ['listener', 'protocol'],
    registers: [this.registry],
  });
  readonly grpcRequests = new Counter({
    name: 'geminio_grpc_requests_total',
    help: 'gRPC calls handled, by listener (or inbound service) and grpc-status',
    labelNames: ['listener', 'grpc_status'],
    registers: [this.registry],
  });

  /** Counts one request by its protocol. */
  protocolRequest(listener: string, protocol: string): void {
    const byListener = inner(this.protocolSeries, listener);
    let series = byListener.get(protocol);
    if (!series) {
      series = new CounterSeries(this.protocolRequests, { listener, protocol });
      byListener.set(protocol, series);
    }
    series.inc();
  }

  /** Counts one gRPC call by its grpc-status (a bounded label). */
  grpcRequest(listener: string, grpcStatus: string): void {
    const byListener = inner(this.grpcSeries, listener);
    let series = byListener.get(grpcStatus);
    if (!series) {
      series = new CounterSeries(this.grpcRequests, { listener, grpc_status: grpcStatus });
      byListener.set(grpcStatus, series);
    }
    series.inc();
  }

  /** Bound series by their label values (no label object hashed, no key built, per update). */
  private readonly protocolSeries = new Map<string, Map<string, CounterSeries>>();
  private readonly grpcSeries = new Map<string, Map<string, CounterSeries>>();
  /** By direction and service: the stream counters and gauge. */
  private readonly streamSeries = new Map<string, Map<string, StreamSeries>>();

  /** The HTTP series by listener, service and upstream (HTTP/2 exchanges look theirs up per request). */
  private readonly seriesByListener = new Map<string, Map<string, Map<string, HttpSeries>>>();
  /** By direction, hook and plugin: the allow and the deny series. */
  private readonly decisionSeries = new Map<
    string,
    Map<string, Map<string, [CounterSeries, CounterSeries]>>
  >();

  /** Bytes counted on streams and not yet added to `bytes`, by direction and service. */
  private readonly byteTallies = new Map<string, ByteTally>();

  private tally(direction: Direction, service: string): ByteTally {
    const key = `${direction}\0${service}`;
    let t = this.byteTallies.get(key);
    if (!t) {
      t = { direction, service, rx: 0, tx: 0 };
      this.byteTallies.set(key, t);
    }
    return t;
  }

  /** Adds the tallied bytes to the counter (called by every scrape of the registry). */
  private flushBytes(): void {
    for (const t of this.byteTallies.values()) {
      // Both series exist from the first stream on (a scrape shows rx 0 rather than nothing).
      this.bytes.inc({ direction: t.direction, service: t.service, flow: 'rx' }, t.rx);
      this.bytes.inc({ direction: t.direction, service: t.service, flow: 'tx' }, t.tx);
      t.rx = 0;
      t.tx = 0;
    }
  }

  /** The series of one listener (and service): label values fixed by the config. */
  httpSeries(listener: string, service: string, upstream: string): HttpSeries {
    const byUpstream = inner(inner(this.seriesByListener, listener), service);
    let series = byUpstream.get(upstream);
    if (!series) {
      series = new HttpSeries(this, listener, service, upstream);
      byUpstream.set(upstream, series);
    }
    return series;
  }

  /** Counts one decision of the hooks (or plugins) and who made it. */
  authzDecision(direction: Direction, hook: string, plugin: string, allow: boolean): void {
    const byPlugin = inner(inner(this.decisionSeries, direction), hook);
    let pair = byPlugin.get(plugin);
    if (!pair) {
      const labels = (decision: string) => ({ direction, hook, plugin, decision });
      pair = [
        new CounterSeries(this.authzDecisions, labels('allow')),
        new CounterSeries(this.authzDecisions, labels('deny')),
      ];
      byPlugin.set(plugin, pair);
    }
    pair[allow ? 0 : 1].inc();
  }

  constructor(options: { defaults?: boolean } = {}) {
    if (options.defaults !== false) collectDefaultMetrics({ register: this.registry });
    this.buildInfo.set({ version: SIDECAR_VERSION, node: process.versions.node }, 1);
  }

  /**
   * Counts a stream as open until it closes, and its bytes both ways, under `direction` and `service`. The bytes
   * come from the SDK's diagnostics channels (payload received from and framed to the peer); bytes that crossed
   * before the stream was labelled (an accepted stream is routed after its first bytes) are added when it
   * finalizes, from the totals its close event carries.
   */
  trackStream(stream: Stream, direction: Direction, service: string): void {
    const byService = inner(this.streamSeries, direction);
    let series = byService.get(service);
    if (!series) {
      const labels = { direction, service };
      series = {
        opened: new CounterSeries(this.streamsOpened, labels),
        closed: new CounterSeries(this.streamsClosed, labels),
        open: new GaugeSeries(this.streamsOpen, labels),
      };
      byService.set(service, series);
    }
    series.opened.inc();
    series.open.inc();
    watchStreamBytes();
    tracked.set(stream, { tally: this.tally(direction, service), rx: 0, tx: 0 });
    const bound = series;
    stream.once('close', () => {
      bound.closed.inc();
      bound.open.dec();
    });
  }
}

const STATUS_CLASSES = ['1xx', '2xx', '3xx', '4xx', '5xx'];

/** The status class of an HTTP status: 2xx, 4xx, ... (499, the client left first, is a 4xx). */
export function statusClass(status: number): string {
  return status >= 100 && status < 600 ? STATUS_CLASSES[Math.floor(status / 100) - 1]! : 'other';
}

/**
 * The HTTP series of one listener and service, with their labelled series bound once (observe/series.ts): an
 * exchange updates them without hashing a label object or building a key. Methods are bounded (methodLabel),
 * statuses are codes the sidecar or the target sent (a target inventing codes could add at most 900 of them).
 */
export class HttpSeries {
  /** By method, then status code. */
  private readonly requests = new Map<string, Map<number, CounterSeries>>();
  /** By method, then status class. */
  private readonly durations = new Map<string, Map<string, HistogramSeries>>();
  /** By protocol. */
  private readonly protocols = new Map<string, CounterSeries>();
  readonly requestSize: HistogramSeries;
  readonly responseSize: HistogramSeries;
  readonly inFlight: GaugeSeries;
  readonly connections: GaugeSeries;

  constructor(
    private readonly metrics: Metrics,
    readonly listener: string,
    readonly service: string,
    readonly upstream: string,
  ) {
    const labels = { listener, service };
    this.requestSize = new HistogramSeries(metrics.httpRequestSize, labels);
    this.responseSize = new HistogramSeries(metrics.httpResponseSize, labels);
    this.inFlight = new GaugeSeries(metrics.httpInFlight, labels);
    this.connections = new GaugeSeries(metrics.httpConnections, labels);
  }

  /** Counts a request refused before any handler saw it (its status only: it had no duration or body). */
  refused(method: string, status: number): void {
    this.count(method, status);
  }

  /** Counts one finished exchange: its status, duration and body sizes. */
  exchange(
    method: string,
    status: number,
    seconds: number,
    requestBytes: number,
    responseBytes: number,
  ): void {
    this.count(method, status);
    const cls = statusClass(status);
    let byClass = this.durations.get(method);
    if (!byClass) {
      byClass = new Map();
      this.durations.set(method, byClass);
    }
    let duration = byClass.get(cls);
    if (!duration) {
      duration = new HistogramSeries(this.metrics.httpDuration, {
        listener: this.listener,
        service: this.service,
        upstream: this.upstream,
        method,
        status_class: cls,
      });
      byClass.set(cls, duration);
    }
    duration.observe(seconds);
    this.requestSize.observe(requestBytes);
    this.responseSize.observe(responseBytes);
  }

  /** Counts one request by its protocol (geminio_http_requests_by_protocol_total, labelled by this listener). */
  protocol(protocol: string): void {
    let series = this.protocols.get(protocol);
    if (!series) {
      series = new CounterSeries(this.metrics.protocolRequests, { listener: this.listener, protocol });
      this.protocols.set(protocol, series);
    }
    series.inc();
  }

  private count(method: string, status: number): void {
    let byStatus = this.requests.get(method);
    if (!byStatus) {
      byStatus = new Map();
      this.requests.set(method, byStatus);
    }
    let requests = byStatus.get(status);
    if (!requests) {
      requests = new CounterSeries(this.metrics.httpRequests, {
        listener: this.listener,
        service: this.service,
        upstream: this.upstream,
        method,
        status: String(status),
        status_class: statusClass(status),
      });
      byStatus.set(status, requests);
    }
    requests.inc();
  }
}

/** The map under `key` in `map`, made empty the first time. */
function inner<K, V>(map: Map<K, Map<string, V>>, key: K): Map<string, V> {
  let m = map.get(key);
  if (!m) {
    m = new Map();
    map.set(key, m);
  }
  return m;
}

/** A bounded reason for a failed handshake, from its error. */
export function handshakeReason(err: Error & { code?: string }): string {
  const m = `${err.code ?? ''} ${err.message}`.toLowerCase();
  if (/timed? ?out|etimedout/.test(m)) return 'timeout';
  if (/ssl|tls|certificate|cert_|err_ssl|self.signed|handshake failure/.test(m)) return 'tls';
  if (/refused|denied|not allowed|no token|reserved|held by|forbidden|unauthori/.test(m)) return 'refused';
  if (/econnreset|epipe|socket hang up|closed|ended|eof/.test(m)) return 'closed';
  if (/magic|version|frame|packet|malformed|invalid|unexpected|protocol/.test(m)) return 'protocol';
  return 'other';
}

/** The stream series of one direction and service. */
interface StreamSeries {
  opened: CounterSeries;
  closed: CounterSeries;
  open: GaugeSeries;
}

/** A labelled stream: where its bytes go, and how many were counted so far. */
interface Tracked {
  tally: ByteTally;
  rx: number;
  tx: number;
}

/**
 * Labelled streams of every Metrics in the process (diagnostics channels are process-wide): a stream no Metrics
 * labelled is not counted, and a finished one is dropped (or collected with its stream).
 */
const tracked = new WeakMap<object, Tracked>();
let watching = false;

function watchStreamBytes(): void {
  if (watching) return;
  watching = true;
  diagnostics.subscribe(CHANNELS.streamBytesIn, (message) => {
    const m = message as StreamBytesMessage;
    const t = tracked.get(m.stream);
    if (!t) return;
    t.rx += m.bytes;
    t.tally.rx += m.bytes;
  });
  diagnostics.subscribe(CHANNELS.streamBytesOut, (message) => {
    const m = message as StreamBytesMessage;
    const t = tracked.get(m.stream);
    if (!t) return;
    t.tx += m.bytes;
    t.tally.tx += m.bytes;
  });
  diagnostics.subscribe(CHANNELS.streamClose, (message) => {
    const m = message as StreamCloseMessage;
    const t = tracked.get(m.stream);
    if (!t) return;
    tracked.delete(m.stream);
    // The totals reconcile what crossed before the labels were attached.
    if (m.bytesIn > t.rx) t.tally.rx += m.bytesIn - t.rx;
    if (m.bytesOut > t.tx) t.tally.tx += m.bytesOut - t.tx;
  });
}
