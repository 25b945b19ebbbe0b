/**
 * One endpoint of an upstream: one reconnecting client End to one `host:port`, with its own ClientID and resume
 * secret (the SDK's). The SDK's first dial must succeed (as in Go); only later outages are redialled by the End
 * itself. So the first dial is retried here, in the background, with the same backoff.
 */
import { EventEmitter } from 'node:events';
import {
  backoffDelay,
  type DialOptions,
  dial,
  type End,
  type ReconnectPolicy,
  type Stream,
} from '../../sdk/index.js';
import type { UpstreamConfig } from '../config/schema.js';
import type { Logger } from '../observe/logger.js';
import { type EndpointSeries, handshakeReason, type Metrics } from '../observe/metrics.js';
import { EndpointStats } from './balancer.js';

export type EndpointState = 'connecting' | 'connected' | 'reconnecting' | 'draining' | 'closed';

export interface EndpointDeps {
  metrics: Metrics;
  logger: Logger;
  /** Streams the peer opens on this End, when `serve` is on. */
  onStream?: (stream: Stream, end: End) => void;
  /** Checked before each dial: the TLS and token files were read (an error names what is wrong). */
  ready: () => void;
}

export class Endpoint extends EventEmitter {
  state: EndpointState = 'connecting';
  /** For /debug/ends: reconnects so far, and the last failure (dial or lost connection) with its time. */
  reconnects = 0;
  lastError: { message: string; at: string } | undefined;
  readonly stats: EndpointStats;
  private end: End | undefined;
  private closed = false;
  private wake: (() => void) | undefined;
  private readonly log: Logger;
  private readonly labels: { upstream: string; endpoint: string };
  /** The series each unit of work updates (bound once, not per request). */
  readonly series: EndpointSeries;

  constructor(
    readonly upstream: string,
    readonly address: string,
    private readonly config: UpstreamConfig,
    /** Shared by the endpoints of an upstream: a reload of the TLS or token files reaches them all. */
    private readonly dialOptions: DialOptions,
    private readonly deps: EndpointDeps,
  ) {
    super();
    this.stats = new EndpointStats(address);
    this.labels = { upstream, endpoint: address };
    this.series = deps.metrics.endpointSeries(this.labels);
    this.log = deps.logger.child({ upstream, endpoint: address });
    deps.metrics.endpointConnected.set(this.labels, 0);
  }

  /** Starts dialling in the background. */
  start(): void {
    this.connectLoop().catch((err: Error) => this.log.error({ err }, 'endpoint loop failed'));
  }

  /** The End when it is connected now. */
  current(): End | undefined {
    return this.state === 'connected' ? this.end : undefined;
  }

  get endNow(): End | undefined {
    return this.end;
  }

  private async connectLoop(): Promise<void> {
    for (let attempt = 0; !this.closed; attempt++) {
      try {
        this.deps.ready();
        const end = await dial(this.address, this.dialOptions);
        if (this.closed) {
          end.destroy();
          return;
        }
        this.adopt(end);
        return;
      } catch (err) {
        this.lastError = { message: (err as Error).message, at: new Date().toISOString() };
        this.deps.metrics.handshakeFailures.inc({ side: 'upstream', reason: handshakeReason(err as Error) });
        this.deps.metrics.upstreamDialFailures.inc({ upstream: this.upstream });
        const level = attempt === 0 ? 'warn' : 'debug';
        this.log[level]({ err: (err as Error).message, attempt }, 'dial failed; retrying');
        // One policy for the End's redials and for the retries of a failed first dial here.
        await this.sleep(backoffDelay(this.dialOptions.reconnect as ReconnectPolicy, attempt));
      }
    }
  }

  private adopt(end: End): void {
    this.end = end;
    const up = () => {
      if (this.closed || this.state === 'draining') return;
      this.state = 'connected';
      this.deps.metrics.endpointConnected.set(this.labels, 1);
      this.emit('connected', end);
    };
    end.on('error', (err: Error) => this.log.debug({ err: err.message }, 'endpoint end error'));
    end.on('disconnect', (err: Error) => {
      if (this.state === 'connected') this.state = 'reconnecting';
      this.deps.metrics.endpointConnected.set(this.labels, 0);
      this.deps.metrics.upstreamDisconnects.inc({ upstream: this.upstream });
      this.lastError = { message: err?.message ?? 'connection lost', at: new Date().toISOString() };
      this.log.warn(
        { err: err?.message, clientId: String(end.clientId) },
        'endpoint disconnected; reconnecting',
      );
      this.emit('disconnected');
    });
    end.on('reconnect', (info: { clientId: bigint; attempts: number }) => {
      this.deps.metrics.upstreamReconnects.inc({ upstream: this.upstream });
      this.reconnects++;
      this.log.info({ clientId: String(info.clientId), attempts: info.attempts }, 'endpoint reconnected');
      up();
    });
    end.once('close', () => {
      this.deps.metrics.endpointConnected.set(this.labels, 0);
      if (this.closed || this.state === 'draining') return;
      // The End gave up (maxAttempts) or the peer closed it for good: start over with a fresh End.
      this.log.warn('endpoint end closed; dialling again');
      this.state = 'connecting';
      this.end = undefined;
      this.emit('disconnected');
      this.start();
    });
    this.log.info({ clientId: String(end.clientId) }, 'endpoint connected');
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

  /**
   * The endpoint is gone (DNS, reload): it takes no new work at once, and closes once its work in flight is done,
   * or after `graceMs` at the latest.
   */
  async drain(graceMs: number): Promise<void> {
    if (this.closed || this.state === 'draining') return;
    this.state = 'draining';
    this.deps.metrics.endpointConnected.set(this.labels, 0);
    this.log.info({ inflight: this.stats.outstanding, graceMs }, 'endpoint removed; draining');
    this.emit('disconnected');
    const deadline = Date.now() + graceMs;
    while (this.stats.outstanding > 0 && Date.now() < deadline && !this.closed) {
      await new Promise((r) => setTimeout(r, 50));
    }
    await this.close();
  }

  /** Closes the End gracefully; stops any dial loop; its metric series go. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.state = 'closed';
    this.wake?.();
    this.deps.metrics.forgetEndpoint(this.labels);
    this.emit('closed');
    await this.end?.close().catch(() => {});
  }
}
