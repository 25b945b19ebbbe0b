/**
 * Upstreams: one reconnecting client End per configured upstream, shared by every listener that names it.
 *
 * The SDK's first dial must succeed (as in Go); only later outages are redialled by the End itself. So the first
 * dial is retried here, in the background, with the same backoff, and the upstream reports not-ready meanwhile.
 */
import { EventEmitter } from 'node:events';
import { readFileSync } from 'node:fs';
import {
  backoffDelay,
  type DialOptions,
  defaultReconnectPolicy,
  dial,
  type End,
  type ReconnectPolicy,
  type Stream,
} from '../../sdk/index.js';
import type { UpstreamConfig } from '../config/schema.js';
import { type ConfigProblem, formatProblem } from '../config/validate.js';
import { clientTls, materialKey, readTlsMaterial } from '../net/tls.js';
import type { Logger } from '../observe/logger.js';
import { handshakeReason, type Metrics } from '../observe/metrics.js';

/** Where a listener gets the End to open streams on: an upstream, or a client End for a reverse tunnel. */
export interface EndSource {
  readonly name: string;
  /** The End when it is connected now; undefined while down (requests then get 503 at once). */
  current(): End | undefined;
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
  state: UpstreamState = 'connecting';
  /** For /debug/ends: reconnects so far, and the last failure (dial or lost connection) with its time. */
  reconnects = 0;
  lastError: { message: string; at: string } | undefined;
  private end: End | undefined;
  private closed = false;
  private wake: (() => void) | undefined;
  private readonly log: Logger;
  /** The config this upstream was made from; a reload keeps the upstream when it is unchanged. */
  readonly key: string;
  /**
   * The dial options. The SDK reads `tls` and `meta` on every (re)connect, so a reload that finds a new
   * certificate or token replaces them here: the live connection keeps its session, the next one uses them.
   */
  private readonly dialOptions: DialOptions;
  private readonly reconnect: ReconnectPolicy;
  private material = '';

  constructor(
    readonly name: string,
    readonly config: UpstreamConfig,
    private readonly deps: UpstreamDeps,
  ) {
    super();
    this.key = JSON.stringify(config);
    this.log = deps.logger.child({ upstream: name });
    deps.metrics.upstreamConnected.set({ upstream: name }, 0);
    const { reconnect } = config;
    // One policy for the End's redials and for the retries of a failed first dial here.
    this.reconnect = {
      ...defaultReconnectPolicy,
      minDelay: reconnect.minDelayMs,
      maxDelay: reconnect.maxDelayMs,
      jitter: reconnect.jitter,
      // Work that meets the upstream down fails at once (the listeners answer 503) instead of waiting out a
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

  /** Starts dialling in the background. */
  start(): void {
    if (this.material === '') {
      const { problems } = this.refresh();
      if (problems.length > 0) this.log.error({ problems }, 'upstream TLS or token files are invalid');
    }
    this.connectLoop().catch((err: Error) => this.log.error({ err }, 'upstream loop failed'));
  }

  current(): End | undefined {
    return this.state === 'connected' ? this.end : undefined;
  }

  /** The End, connected or not (for /debug/ends). */
  get endNow(): End | undefined {
    return this.end;
  }

  /** Resolves when connected (tests, the demo). */
  async waitConnected(timeoutMs = 10_000): Promise<End> {
    if (this.state === 'connected' && this.end) return this.end;
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

  private async connectLoop(): Promise<void> {
    for (let attempt = 0; !this.closed; attempt++) {
      try {
        // Never dial without the TLS or token files (in plain text, or with no name): until they were read once,
        // try them again, or fail this attempt.
        if (this.material === '') {
          const { problems } = this.refresh();
          if (problems.length > 0) throw new Error(`TLS files: ${problems.map(formatProblem).join('; ')}`);
        }
        const end = await dial(this.config.address, this.dialOptions);
        if (this.closed) {
          end.destroy();
          return;
        }
        this.adopt(end);
        return;
      } catch (err) {
        this.deps.metrics.upstreamDialFailures.inc({ upstream: this.name });
        this.lastError = { message: (err as Error).message, at: new Date().toISOString() };
        this.deps.metrics.handshakeFailures.inc({ side: 'upstream', reason: handshakeReason(err as Error) });
        const level = attempt === 0 ? 'warn' : 'debug';
        this.log[level](
          { err: (err as Error).message, address: this.config.address, attempt },
          'dial failed; retrying',
        );
        await this.sleep(backoffDelay(this.reconnect, attempt));
      }
    }
  }

  /** The token for the far side's `token` plugin (a file is read by refresh(), on start and on each reload). */
  private token(): string | undefined {
    if (this.config.tokenFile !== undefined) return readFileSync(this.config.tokenFile, 'utf8').trim();
    return this.config.token;
  }

  private adopt(end: End): void {
    this.end = end;
    const labels = { upstream: this.name };
    const up = () => {
      this.state = 'connected';
      this.deps.metrics.upstreamConnected.set(labels, 1);
      this.emit('connected', end);
    };
    end.on('error', (err: Error) => this.log.debug({ err: err.message }, 'upstream end error'));
    end.on('disconnect', (err: Error) => {
      this.state = 'reconnecting';
      this.deps.metrics.upstreamConnected.set(labels, 0);
      this.deps.metrics.upstreamDisconnects.inc(labels);
      this.lastError = { message: err?.message ?? 'connection lost', at: new Date().toISOString() };
      this.log.warn(
        { err: err?.message, clientId: String(end.clientId) },
        'upstream disconnected; reconnecting',
      );
    });
    end.on('reconnect', (info: { clientId: bigint; attempts: number }) => {
      this.deps.metrics.upstreamReconnects.inc(labels);
      this.reconnects++;
      this.log.info({ clientId: String(info.clientId), attempts: info.attempts }, 'upstream reconnected');
      up();
    });
    end.once('close', () => {
      this.deps.metrics.upstreamConnected.set(labels, 0);
      if (this.closed) return;
      // The End gave up (maxAttempts) or the peer closed it for good: start over with a fresh End.
      this.log.warn('upstream end closed; dialling again');
      this.state = 'connecting';
      this.end = undefined;
      this.start();
    });
    this.log.info({ clientId: String(end.clientId), address: this.config.address }, 'upstream connected');
    up();
    if (this.config.serve && this.deps.onStream) this.serve(end);
  }

  private serve(end: End): void {
    (async () => {
      for await (const stream of end.streams()) this.deps.onStream!(stream, end);
    })().catch((err: Error) => this.log.debug({ err: err.message }, 'accept loop ended'));
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, ms);
      this.wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }

  /** Closes the End gracefully (streams flush and are dismissed); stops any dial loop. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.state = 'closed';
    this.wake?.();
    this.deps.metrics.upstreamConnected.set({ upstream: this.name }, 0);
    await this.end?.close().catch(() => {});
  }
}
