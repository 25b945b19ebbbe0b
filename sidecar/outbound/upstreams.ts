/**
 * Upstreams: a set of endpoints per configured upstream (a single `address`, a static `endpoints` list, or DNS
 * `discovery`), one reconnecting End per endpoint (./endpoints.ts), and a balancer (./balancer.ts) that picks an
 * endpoint for each unit of work: an HTTP request, an RPC gateway call, a published message, a TCP connection.
 * Shared by every listener that names the upstream.
 */
import { EventEmitter } from 'node:events';
import { readFileSync } from 'node:fs';
import {
  type DialOptions,
  defaultReconnectPolicy,
  type End,
  type ReconnectPolicy,
  type Stream,
} from '../../sdk/index.js';
import type { UpstreamConfig } from '../config/schema.js';
import { type ConfigProblem, formatProblem } from '../config/validate.js';
import { clientTls, materialKey, readTlsMaterial } from '../net/tls.js';
import type { Logger } from '../observe/logger.js';
import type { Metrics } from '../observe/metrics.js';
import { Balancer, type Candidate, type EndpointStats, type Outcome } from './balancer.js';
import { Discovery } from './discovery.js';
import { Endpoint } from './endpoints.js';

/** One unit of work's hold on an endpoint: the End to use, and `done` to report how it went (once). */
export interface Lease {
  readonly end: End;
  /** The endpoint's host:port (logs, exclusion on retry). */
  readonly endpoint: string;
  /** Stable per endpoint: keys a listener's per-endpoint keep-alive pool. */
  readonly key: string;
  /** The endpoint's End now (a pool's later connects), undefined while it is down. */
  current(): End | undefined;
  /** Called once when the endpoint goes for good (a pool for it closes). */
  onGone(fn: () => void): void;
  done(outcome: Outcome): void;
}

/** Where a listener gets the End to open streams on: an upstream, or a client End for a reverse tunnel. */
export interface EndSource {
  readonly name: string;
  /** A connected End now; undefined while down (requests then get 503 at once). */
  current(): End | undefined;
  /** Balancing sources pick an endpoint per unit of work, avoiding `exclude` (endpoints already tried). */
  pick?(exclude?: ReadonlySet<string>): Lease | undefined;
}

/** A lease on whatever the source gives: balanced when it balances, else its one current End. */
export function lease(source: EndSource, exclude?: ReadonlySet<string>): Lease | undefined {
  if (source.pick) return source.pick(exclude);
  const end = source.current();
  if (!end || exclude?.has('single')) return undefined;
  return {
    end,
    endpoint: source.name,
    key: 'single',
    current: () => source.current(),
    onGone: () => {},
    done: () => {},
  };
}

export type UpstreamState = 'connecting' | 'connected' | 'reconnecting' | 'closed';

export interface UpstreamDeps {
  metrics: Metrics;
  logger: Logger;
  /** Announced to the peer as the End meta {"name": ...}. */
  announce: string;
  /** Streams the peer opens on this End, when `serve` is on. */
  onStream?: (stream: Stream, end: End) => void;
}

export class Upstream extends EventEmitter implements EndSource {
  readonly endpoints = new Map<string, Endpoint>();
  /** Endpoints removed (DNS, reload) that still finish their work in flight; listed by /debug/ends until closed. */
  private readonly leaving = new Set<Endpoint>();
  /** The balancer's view of `endpoints`, made on the first pick after the set changed. */
  private candidates: Array<Candidate & { endpoint: Endpoint }> | undefined;
  private closed = false;
  private readonly log: Logger;
  private readonly balancer: Balancer;
  private discovery: Discovery | undefined;
  /** The config this upstream was made from; a reload keeps the upstream when it is unchanged. */
  key: string;
  /**
   * The dial options, shared by the endpoints. The SDK reads `tls` and `meta` on every (re)connect, so a reload
   * that finds a new certificate or token replaces them here: live connections keep their sessions, the next ones
   * use them.
   */
  private readonly dialOptions: DialOptions;
  private readonly reconnect: ReconnectPolicy;
  private material = '';

  constructor(
    readonly name: string,
    /** Replaced in place only by retarget() (a reload that changes the static endpoints alone). */
    public config: UpstreamConfig,
    private readonly deps: UpstreamDeps,
  ) {
    super();
    this.key = JSON.stringify(config);
    this.log = deps.logger.child({ upstream: name });
    this.balancer = new Balancer(config.balancing);
    deps.metrics.upstreamConnected.set({ upstream: name }, 0);
    const { reconnect } = config;
    // One policy for the End's redials and for the retries of a failed first dial here.
    this.reconnect = {
      ...defaultReconnectPolicy,
      minDelay: reconnect.minDelayMs,
      maxDelay: reconnect.maxDelayMs,
      jitter: reconnect.jitter,
      // Work that meets an endpoint down fails at once (or goes to another endpoint) instead of waiting out a
      // reconnect: the client, not the sidecar, decides whether to wait.
      failFast: true,
    };
    this.dialOptions = {
      reconnect: this.reconnect,
      handshakeTimeout: config.handshakeTimeoutMs,
      heartbeatInterval: config.heartbeatIntervalMs,
      streamOpenTimeout: config.streamOpenTimeoutMs,
      maxStreams: config.maxStreams,
    };
  }

  /** Connected: at least one endpoint is; connecting: none ever was; reconnecting: some were, none is now. */
  get state(): UpstreamState {
    if (this.closed) return 'closed';
    if (this.connectedCount() > 0) return 'connected';
    const ever = [...this.endpoints.values()].some((e) => e.endNow !== undefined);
    return ever ? 'reconnecting' : 'connecting';
  }

  connectedCount(): number {
    let n = 0;
    for (const e of this.endpoints.values()) if (e.state === 'connected') n++;
    return n;
  }

  /** Why this upstream keeps the sidecar not ready (fewer than minReady endpoints connected); undefined: ready. */
  notReady(): string | undefined {
    const n = this.connectedCount();
    const { minReady } = this.config.balancing;
    if (n >= minReady) return undefined;
    return `upstream ${this.name} has ${n} of ${this.endpoints.size} endpoints connected (minReady ${minReady})`;
  }

  /**
   * Reads the TLS files and the token file again (start, SIGHUP, a changed file). A valid new set is used from
   * the next connection on; an invalid one is refused, the running set stays. Returns the problems (none: ok)
   * and whether anything changed.
   */
  refresh(): { problems: ConfigProblem[]; changed: boolean } {
    const { material, problems } = readTlsMaterial(this.config.tls, `upstreams.${this.name}.tls`);
    let token: string | undefined;
    try {
      token = this.token();
    } catch (err) {
      const value = this.config.tokenFile;
      problems.push({
        path: `upstreams.${this.name}.tokenFile`,
        value,
        expected: `a readable file (${(err as Error).message})`,
      });
    }
    if (problems.length > 0) return { problems, changed: false };
    const key = `${materialKey(material)}|${token ?? ''}`;
    const changed = this.material !== '' && key !== this.material;
    this.material = key;
    this.dialOptions.tls = clientTls(this.config.tls, material);
    this.dialOptions.meta = JSON.stringify({ name: this.deps.announce, token });
    return { problems, changed };
  }

  /** Starts dialling the static endpoints, or discovery, in the background. */
  start(): void {
    if (this.material === '') {
      const { problems } = this.refresh();
      if (problems.length > 0) this.log.error({ problems }, 'upstream TLS or token files are invalid');
    }
    const { address, endpoints, discovery } = this.config;
    if (discovery) {
      this.discovery = new Discovery(discovery, this.log, (found) => this.setEndpoints(found));
      this.discovery.start();
    } else {
      this.setEndpoints(endpoints ?? (address !== undefined ? [address] : []));
    }
  }

  /**
   * A reload whose config for this upstream differs only in its static `endpoints`: applies the new list in place
   * (kept endpoints keep their Ends, removed ones drain) and returns true; otherwise false (the upstream is
   * replaced).
   */
  retarget(next: UpstreamConfig): boolean {
    if (this.closed || this.config.endpoints === undefined || next.endpoints === undefined) return false;
    const same = (c: UpstreamConfig) => JSON.stringify({ ...c, endpoints: undefined });
    if (same(next) !== same(this.config)) return false;
    if (JSON.stringify(next) === this.key) return true;
    this.key = JSON.stringify(next);
    this.config = next;
    this.log.info({ endpoints: next.endpoints }, 'endpoints changed by reload');
    this.setEndpoints(next.endpoints);
    return true;
  }

  /** Makes the endpoint set this list: new ones are dialled, missing ones drain (bounded by drainMs). */
  setEndpoints(addresses: readonly string[]): void {
    if (this.closed) return;
    this.candidates = undefined;
    const wanted = new Set(addresses);
    for (const [address, e] of this.endpoints) {
      if (wanted.has(address)) continue;
      this.endpoints.delete(address);
      this.leaving.add(e);
      void e.drain(this.config.balancing.drainMs).finally(() => this.leaving.delete(e));
    }
    for (const address of wanted) {
      if (this.endpoints.has(address)) continue;
      const e = new Endpoint(this.name, address, this.config, this.dialOptions, {
        metrics: this.deps.metrics,
        logger: this.deps.logger,
        onStream: this.deps.onStream,
        ready: () => {
          // Never dial without the TLS or token files (in plain text, or with no name): until they were read
          // once, try them again, or fail this attempt.
          if (this.material !== '') return;
          const { problems } = this.refresh();
          if (problems.length > 0) throw new Error(`TLS files: ${problems.map(formatProblem).join('; ')}`);
        },
      });
      e.on('connected', (end: End) => {
        this.balancer.reset(e.stats);
        this.gauge();
        this.emit('connected', end);
      });
      e.on('disconnected', () => this.gauge());
      this.endpoints.set(address, e);
      this.log.info({ endpoint: address }, 'endpoint added');
      e.start();
    }
    this.candidates = undefined;
    this.gauge();
  }

  private gauge(): void {
    this.deps.metrics.upstreamConnected.set({ upstream: this.name }, this.connectedCount() > 0 ? 1 : 0);
  }

  /** A connected End (the first connected endpoint's); for facts such as a ClientID before a pick. */
  current(): End | undefined {
    for (const e of this.endpoints.values()) {
      const end = e.current();
      if (end) return end;
    }
    return undefined;
  }

  /** Picks an endpoint for one unit of work (P2C over outstanding work x latency EWMA). */
  pick(exclude?: ReadonlySet<string>): Lease | undefined {
    // The candidates are kept (one per endpoint, rebuilt when the set changes); only `usable` is read again.
    let candidates = this.candidates;
    if (!candidates) {
      candidates = [...this.endpoints.values()].map((e) => ({ endpoint: e, stats: e.stats, usable: false }));
      this.candidates = candidates;
    }
    for (const c of candidates) c.usable = c.endpoint.state === 'connected';
    const stats = this.balancer.pick(candidates, exclude);
    if (!stats) return undefined;
    const e = this.endpoints.get(stats.id)!;
    e.series.inflight.set(stats.outstanding);
    return new EndpointLease(this, e, stats, e.current()!);
  }

  /** A lease's end (EndpointLease.done): the balancer's counts, then the endpoint's series. */
  settle(e: Endpoint, stats: EndpointStats, outcome: Outcome): void {
    const ejected = this.balancer.done(stats, outcome);
    if (e.state === 'closed') return; // its series are gone; do not bring them back
    const { series } = e;
    series.inflight.set(stats.outstanding);
    series.requests['neutral' in outcome ? 'other' : outcome.ok ? 'ok' : 'failed'].inc();
    if (stats.ewma !== undefined) series.latency.set(stats.ewma / 1000);
    if (ejected) {
      series.ejections.inc();
      const backoffMs = Math.round(stats.ejectedUntil - performance.now());
      this.log.warn(
        { endpoint: e.address, failures: stats.consecutiveFailures, backoffMs },
        'endpoint ejected after consecutive failures',
      );
    }
  }

  /** Resolves when at least one endpoint is connected (tests, the demo). */
  async waitConnected(timeoutMs = 10_000): Promise<End> {
    const now = this.current();
    if (now) return now;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`upstream ${this.name} not connected within ${timeoutMs} ms`)),
        timeoutMs,
      );
      this.once('connected', (end: End) => {
        clearTimeout(timer);
        resolve(end);
      });
    });
  }

  /** The first endpoint's End, connected or not (one-endpoint upstreams, tests). */
  get endNow(): End | undefined {
    return this.endpoints.values().next().value?.endNow;
  }

  /** Every endpoint and its state, for /debug/ends. */
  describe(): Array<Record<string, unknown>> {
    const t = performance.now();
    return [...this.endpoints.values(), ...this.leaving].map((e) => ({
      endpoint: e.address,
      state: e.state,
      health: e.stats.health,
      ejectedForMs: e.stats.health === 'ejected' ? Math.max(0, Math.round(e.stats.ejectedUntil - t)) : 0,
      clientId: e.endNow ? String(e.endNow.clientId) : null,
      inflight: e.stats.outstanding,
      requests: e.stats.requests,
      failures: e.stats.failures,
      ejections: e.stats.ejections,
      ewmaMs: e.stats.ewma === undefined ? null : Math.round(e.stats.ewma * 1000) / 1000,
      streams:
        e.endNow
          ?.listStreams()
          .map((s) => ({ streamId: String(s.streamId), meta: s.meta.toString('utf8') })) ?? [],
    }));
  }

  /** The token for the far side's `token` plugin (a file is read by refresh(), on start and on each reload). */
  private token(): string | undefined {
    if (this.config.tokenFile !== undefined) return readFileSync(this.config.tokenFile, 'utf8').trim();
    return this.config.token;
  }

  /** Closes every endpoint's End gracefully; stops discovery and any dial loop. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.discovery?.stop();
    this.deps.metrics.upstreamConnected.set({ upstream: this.name }, 0);
    await Promise.all([...this.endpoints.values(), ...this.leaving].map((e) => e.close()));
  }
}

/** One unit of work's hold on an endpoint of an Upstream (an object with methods: no closures per request). */
class EndpointLease implements Lease {
  private finished = false;

  constructor(
    private readonly upstream: Upstream,
    private readonly e: Endpoint,
    private readonly stats: EndpointStats,
    readonly end: End,
  ) {}

  get endpoint(): string {
    return this.e.address;
  }

  get key(): string {
    return this.e.address;
  }

  current(): End | undefined {
    return this.e.current();
  }

  onGone(fn: () => void): void {
    if (this.e.state === 'closed') fn();
    else this.e.once('closed', fn);
  }

  done(outcome: Outcome): void {
    if (this.finished) return;
    this.finished = true;
    this.upstream.settle(this.e, this.stats, outcome);
  }
}
