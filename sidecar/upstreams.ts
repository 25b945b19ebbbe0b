/**
 * Upstreams: one reconnecting client End per configured upstream, shared by every listener that names it.
 *
 * The SDK's first dial must succeed (as in Go); only later outages are redialled by the End itself. So the first
 * dial is retried here, in the background, with the same backoff, and the upstream reports not-ready meanwhile.
 */
import { EventEmitter } from 'node:events';
import { readFileSync } from 'node:fs';
import { dial, type End, type Stream } from '../sdk/index.js';
import type { UpstreamConfig } from './config.js';
import type { Logger } from './logger.js';
import type { Metrics } from './metrics.js';
import { clientTls } from './tls.js';

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
  private end: End | undefined;
  private closed = false;
  private wake: (() => void) | undefined;
  private readonly log: Logger;
  /** The config this upstream was made from; a reload keeps the upstream when it is unchanged. */
  readonly key: string;

  constructor(
    readonly name: string,
    readonly config: UpstreamConfig,
    private readonly deps: UpstreamDeps,
  ) {
    super();
    this.key = JSON.stringify(config);
    this.log = deps.logger.child({ upstream: name });
    deps.metrics.upstreamConnected.set({ upstream: name }, 0);
  }

  /** Starts dialling in the background. */
  start(): void {
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
    const { reconnect } = this.config;
    for (let attempt = 0; !this.closed; attempt++) {
      try {
        const end = await dial(this.config.address, {
          meta: JSON.stringify({ name: this.deps.announce, token: this.token() }),
          tls: clientTls(this.config.tls),
          reconnect: {
            minDelay: reconnect.minDelayMs,
            maxDelay: reconnect.maxDelayMs,
            jitter: reconnect.jitter,
          },
          handshakeTimeout: this.config.handshakeTimeoutMs,
          heartbeatInterval: this.config.heartbeatIntervalMs,
          streamOpenTimeout: this.config.streamOpenTimeoutMs,
          maxStreams: this.config.maxStreams,
        });
        if (this.closed) {
          end.destroy();
          return;
        }
        this.adopt(end);
        return;
      } catch (err) {
        this.deps.metrics.upstreamDialFailures.inc({ upstream: this.name });
        const level = attempt === 0 ? 'warn' : 'debug';
        this.log[level](
          { err: (err as Error).message, address: this.config.address, attempt },
          'dial failed; retrying',
        );
        const base = Math.min(reconnect.maxDelayMs, reconnect.minDelayMs * 2 ** Math.min(attempt, 20));
        await this.sleep(base * (1 + reconnect.jitter * (Math.random() * 2 - 1)));
      }
    }
  }

  /** The token for the far side's `token` plugin, read afresh on each dial (so a rotated file is picked up). */
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
      this.log.warn(
        { err: err?.message, clientId: String(end.clientId) },
        'upstream disconnected; reconnecting',
      );
    });
    end.on('reconnect', (info: { clientId: bigint; attempts: number }) => {
      this.deps.metrics.upstreamReconnects.inc(labels);
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
