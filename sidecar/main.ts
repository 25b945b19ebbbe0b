/**
 * The composition root. A Sidecar builds, from one config, the upstreams, the service table, the inbound listener,
 * the outbound and tunnel listeners and the admin server; it applies a new config by difference (a reload leaves
 * unchanged listeners and their traffic alone) and shuts down gracefully: not ready, stop accepting, let the work
 * in flight finish within the grace period, then close the Ends.
 */
import type { End, Stream } from '../sdk/index.js';
import type { DebugEnds } from './admin/page.js';
import { AdminServer } from './admin/server.js';
import type { SidecarConfig } from './config/schema.js';
import { type ConfigProblem, formatProblem } from './config/validate.js';
import { InboundListener } from './inbound/listener.js';
import { ServiceRouter } from './inbound/router.js';
import { AccessLog, DEFAULT_ACCESS_LOG } from './observe/access-log.js';
import { createLogger, type Logger } from './observe/logger.js';
import { Metrics } from './observe/metrics.js';
import { DEFAULT_TRACING, Tracing } from './observe/tracing.js';
import { HttpOutboundListener } from './outbound/http-listener.js';
import { TcpOutboundListener } from './outbound/tcp-listener.js';
import { createTunnel } from './outbound/tunnel.js';
import { type EndSource, Upstream } from './outbound/upstreams.js';
import { Authz } from './policy/authz.js';
import { type Hook, HookRunner } from './policy/hooks.js';
import { Identities } from './policy/identities.js';
import { Inflight } from './proxy/inflight.js';
import { parseStreamMeta } from './proxy/stream-meta.js';

type LocalListener = HttpOutboundListener | TcpOutboundListener;

export interface SidecarOptions {
  logger?: Logger;
  metrics?: Metrics;
  /** Hooks to install (tests; the plugin system will add them from config). */
  hooks?: Hook[];
}

export class Sidecar {
  config: SidecarConfig;
  readonly logger: Logger;
  readonly metrics: Metrics;
  readonly hooks: HookRunner;
  /** The authorization plugins (asked by the hook runner for what remote Ends do). */
  readonly authz: Authz;
  /** The identity records of inbound Ends: the inbound listener writes them, the hook runner reads them. */
  readonly identities = new Identities();
  readonly inflight = new Inflight();
  readonly accessLog: AccessLog;
  readonly tracing = new Tracing();
  readonly upstreams = new Map<string, Upstream>();
  readonly listeners = new Map<string, { key: string; listener: LocalListener }>();
  inbound: InboundListener | undefined;
  admin: AdminServer | undefined;
  private router: ServiceRouter | undefined;
  private started = false;
  private shuttingDown = false;
  private shutdownPromise: Promise<void> | undefined;

  constructor(config: SidecarConfig, options: SidecarOptions = {}) {
    this.config = config;
    this.logger = options.logger ?? createLogger(config.log);
    this.metrics = options.metrics ?? new Metrics();
    this.authz = new Authz(this.metrics, this.logger);
    this.hooks = new HookRunner({
      metrics: this.metrics,
      logger: this.logger,
      identities: this.identities,
      authz: this.authz,
      timeoutMs: config.hooks.timeoutMs,
    });
    for (const h of options.hooks ?? []) this.hooks.add(h);
    this.accessLog = new AccessLog(config.accessLog ?? DEFAULT_ACCESS_LOG);
  }

  /** Starts everything; rejects (after undoing what started) when a listener cannot bind. */
  async start(): Promise<void> {
    try {
      // Plugins first: a sidecar whose plugins do not load must not take traffic at all.
      await this.authz.load(this.config.plugins, this.config.configDir ?? process.cwd());
      await this.tracing.load(
        this.config.tracing ?? DEFAULT_TRACING,
        this.config.tracing?.serviceName ?? this.config.name,
        this.metrics,
        this.logger,
      );
      await this.apply(this.config, true);
      this.started = true;
      this.logger.info({ name: this.config.name, admin: this.config.admin.listen }, 'sidecar started');
    } catch (err) {
      this.destroy();
      throw err;
    }
  }

  /** Applies a new (already validated) config by difference. A listener that fails to bind is logged and skipped. */
  async reload(next: SidecarConfig): Promise<void> {
    if (this.shuttingDown) return;
    // Plugins reload on every reload (their code and options may have changed). When one fails to load, the
    // running set stays: never a gap with no plugins.
    let pluginError: Error | undefined;
    try {
      await this.authz.load(next.plugins, next.configDir ?? process.cwd());
    } catch (err) {
      pluginError = err as Error;
      this.logger.error(
        { err: pluginError.message, plugins: this.authz.names },
        'plugins failed to load; keeping the running ones',
      );
    }
    try {
      await this.apply(next, false);
      this.refreshFiles();
      if (pluginError) throw pluginError;
      this.metrics.reloads.inc({ outcome: 'ok' });
      this.logger.info('config reloaded');
    } catch (err) {
      this.metrics.reloads.inc({ outcome: 'error' });
      this.logger.error({ err: (err as Error).message }, 'reload partly failed');
    }
  }

  /**
   * Reads the TLS and token files of the running upstreams, inbound listener and HTTP listeners again (their paths
   * did not change, their contents may have). A valid new set applies to the connections to come; an invalid one
   * keeps the running set. Each change or refusal is logged and counted in geminio_tls_reloads_total.
   */
  private refreshFiles(): void {
    const report = (what: string, r: { problems: ConfigProblem[]; changed: boolean }) => {
      if (r.problems.length > 0) {
        this.metrics.tlsReloads.inc({ what, outcome: 'invalid' });
        const problems = r.problems.map(formatProblem);
        this.logger.error({ what, problems }, 'new TLS or token files refused; keeping the running ones');
        throw new Error(`${what}: ${problems.join('; ')}`);
      }
      if (!r.changed) return;
      this.metrics.tlsReloads.inc({ what, outcome: 'ok' });
      this.logger.info({ what }, 'TLS or token files reloaded');
    };
    const errors: string[] = [];
    const each = (what: string, fn: () => { problems: ConfigProblem[]; changed: boolean }) => {
      try {
        report(what, fn());
      } catch (err) {
        errors.push((err as Error).message);
      }
    };
    for (const u of this.upstreams.values()) each(`upstream ${u.name}`, () => u.refresh());
    const inbound = this.inbound;
    if (inbound) each('inbound', () => inbound.reloadTls());
    for (const [name, { listener }] of this.listeners)
      if (listener instanceof HttpOutboundListener) each(`listener ${name}`, () => listener.reloadTls());
    if (errors.length > 0) throw new Error(errors.join('; '));
  }

  private async apply(next: SidecarConfig, first: boolean): Promise<void> {
    const prev = this.config;
    this.config = next;
    this.logger.level = next.log.level;
    this.accessLog.update(next.accessLog ?? DEFAULT_ACCESS_LOG);
    const errors: string[] = [];
    const attempt = async (what: string, fn: () => Promise<void>) => {
      try {
        await fn();
      } catch (err) {
        if (first) throw err;
        errors.push(`${what}: ${(err as Error).message}`);
      }
    };

    const adminLimits = JSON.stringify(prev.httpServer) !== JSON.stringify(next.httpServer);
    if (first || prev.admin.listen !== next.admin.listen || adminLimits) {
      const old = this.admin;
      await old?.close();
      this.admin = new AdminServer(next.admin.listen, this, next.httpServer, this.logger);
      await attempt('admin', async () => void (await this.admin!.start()));
    }

    const keepAlive = next.inbound?.keepAliveTimeoutMs ?? 65_000;
    if (this.router) this.router.update(next.services, keepAlive);
    else this.router = new ServiceRouter(next.services, { ...this.deps(), keepAliveTimeoutMs: keepAlive });

    for (const [name, u] of this.upstreams) {
      const wanted = next.upstreams[name];
      // Only the static endpoint list changed: the endpoints that stay keep their Ends, removed ones drain.
      if (wanted && u.retarget(wanted)) continue;
      if (!wanted || JSON.stringify(wanted) !== u.key) {
        this.upstreams.delete(name);
        void u.close();
      }
    }
    for (const [name, cfg] of Object.entries(next.upstreams)) {
      if (this.upstreams.has(name)) continue;
      const u = new Upstream(name, cfg, {
        metrics: this.metrics,
        logger: this.logger,
        announce: next.name,
        onStream: (stream: Stream, end: End) => void this.router!.dispatch(stream, end, 'tunnel'),
      });
      this.upstreams.set(name, u);
      u.start();
    }

    if (this.inbound && (!next.inbound || JSON.stringify(next.inbound) !== this.inbound.key)) {
      const old = this.inbound;
      this.inbound = undefined;
      await old.close();
    }
    if (next.inbound && !this.inbound) {
      const inbound = new InboundListener(next.inbound, {
        ...this.deps(),
        identities: this.identities,
        router: () => this.router!,
      });
      await attempt('inbound', async () => {
        await inbound.start();
        this.inbound = inbound;
      });
    }

    const wanted = new Map<string, { key: string; make: () => LocalListener }>();
    for (const c of next.outbound.http) {
      wanted.set(c.name, {
        key: JSON.stringify(['http', c, next.httpServer, next.http2]),
        make: () => new HttpOutboundListener(c, this.source(c.upstream), 'outbound', this.deps()),
      });
    }
    for (const c of next.outbound.tcp) {
      wanted.set(c.name, {
        key: JSON.stringify(['tcp', c]),
        make: () => new TcpOutboundListener(c, this.source(c.upstream), 'outbound', this.deps()),
      });
    }
    for (const t of next.tunnels) {
      wanted.set(t.name, {
        key: JSON.stringify(['tunnel', t, next.httpServer]),
        make: () => createTunnel(t, () => this.inbound, this.deps()),
      });
    }
    for (const [name, { key, listener }] of this.listeners) {
      if (wanted.get(name)?.key === key) continue;
      this.listeners.delete(name);
      listener.stopAccepting();
      void listener.close().then(() => listener.destroy());
      this.logger.info({ listener: name }, 'listener removed');
    }
    for (const [name, w] of wanted) {
      if (this.listeners.has(name)) continue;
      const listener = w.make();
      await attempt(`listener ${name}`, async () => {
        await startWithRetry(listener);
        this.listeners.set(name, { key: w.key, listener });
      });
    }
    if (errors.length > 0) throw new Error(errors.join('; '));
  }

  /** An EndSource that looks the upstream up on each use, so a reloaded upstream is picked up by its listeners. */
  private source(name: string): EndSource {
    return {
      name,
      current: () => this.upstreams.get(name)?.current(),
      pick: (exclude) => this.upstreams.get(name)?.pick(exclude),
    };
  }

  private deps() {
    return {
      metrics: this.metrics,
      logger: this.logger,
      hooks: this.hooks,
      inflight: this.inflight,
      httpServer: this.config.httpServer,
      http2: this.config.http2,
      accessLog: this.accessLog,
      tracing: this.tracing,
    };
  }

  /** Why the sidecar is not ready to take traffic; empty when ready. */
  notReady(): string[] {
    const reasons: string[] = [];
    if (this.shuttingDown) reasons.push('shutting down');
    if (!this.started) reasons.push('starting');
    for (const u of this.upstreams.values()) {
      const why = u.notReady();
      if (why !== undefined) reasons.push(why);
    }
    return reasons;
  }

  /** The Ends, their ClientIDs (as strings) and their open streams, for /debug/ends. */
  debugEnds(): DebugEnds {
    const streams = (end: End | undefined) =>
      end?.listStreams().map((s) => ({ streamId: String(s.streamId), meta: s.meta.toString('utf8') })) ?? [];
    const byService = (end: End | undefined) => {
      const counts: Record<string, number> = {};
      for (const s of end?.listStreams() ?? []) {
        const { service } = parseStreamMeta(s.meta);
        counts[service] = (counts[service] ?? 0) + 1;
      }
      return counts;
    };
    return {
      name: this.config.name,
      upstreams: [...this.upstreams.values()].map((u) => ({
        name: u.name,
        address: u.config.address ?? null,
        state: u.state,
        connected: u.connectedCount(),
        minReady: u.config.balancing.minReady,
        clientId: u.endNow ? String(u.endNow.clientId) : null,
        reconnects: [...u.endpoints.values()].reduce((n, e) => n + e.reconnects, 0),
        lastError:
          [...u.endpoints.values()]
            .map((e) => e.lastError)
            .filter((e) => e !== undefined)
            .sort((x, y) => (x.at < y.at ? 1 : -1))[0] ?? null,
        streamsByService: byService(u.endNow),
        streams: streams(u.endNow),
        endpoints: u.describe(),
      })),
      listeners: [...this.listeners.entries()].map(([name, { listener }]) => ({
        name,
        kind: listener instanceof HttpOutboundListener ? 'http' : 'tcp',
        ...listenerInfo(this.config, name),
      })),
      services: Object.entries(this.config.services).map(([name, svc]) => ({ name, target: svc.target })),
      inbound: [...(this.inbound?.ends.values() ?? [])].map((c) => ({
        clientId: String(c.end.clientId),
        name: c.name ?? null,
        meta: c.end.meta.toString('utf8'),
        remoteAddress: c.end.remoteAddress ?? null,
        state: c.end.state,
        connectedAt: c.connectedAt.toISOString(),
        streamsByService: byService(c.end),
        streams: streams(c.end),
      })),
      inflight: this.inflight.size,
    };
  }

  /**
   * Graceful shutdown: not ready at once, stop accepting, wait for the work in flight up to `graceMs`, then close
   * the Ends cleanly (what is still running after the grace period is dropped). Idempotent.
   */
  shutdown(graceMs = this.config.shutdown.gracePeriodMs): Promise<void> {
    this.shutdownPromise ??= this.doShutdown(graceMs);
    return this.shutdownPromise;
  }

  private async doShutdown(graceMs: number): Promise<void> {
    this.shuttingDown = true;
    this.logger.info({ graceMs, inflight: this.inflight.size }, 'shutting down');
    for (const { listener } of this.listeners.values()) listener.stopAccepting();
    await this.inbound?.stopAccepting();
    const clean = await this.inflight.idle(graceMs);
    const dropped = clean ? 0 : this.inflight.size;
    if (!clean) {
      // Out of time: what still runs is cut (its clients see the connection end), counted and logged; the
      // shutdown itself goes on as usual.
      this.metrics.shutdownDropped.inc(dropped);
      this.logger.warn({ dropped }, 'grace period over; cutting the work in flight');
    }
    for (const { listener } of this.listeners.values()) listener.destroy();
    if (!clean) {
      // The connections go first, so the peers see them go (their requests answer 503 at once) rather than a
      // reset stream each. A destroyed pool cannot be closed (undici: "The client is destroyed"), so each part is
      // either closed or destroyed, never both.
      this.inbound?.destroy();
      this.router?.destroy();
    }
    const steps: Array<[string, (() => Promise<void>) | undefined]> = [
      ['upstreams', async () => void (await Promise.all([...this.upstreams.values()].map((u) => u.close())))],
      ['inbound', clean ? this.inbound && (() => this.inbound!.close()) : undefined],
      ['router', clean ? this.router && (() => this.router!.close()) : undefined],
      ['admin', this.admin && (() => this.admin!.close())],
      ['plugins', () => this.authz.close()],
      ['tracing', () => this.tracing.shutdown()],
    ];
    for (const [what, step] of steps) {
      try {
        await step?.();
      } catch (err) {
        this.logger.warn({ err: (err as Error).message, what }, 'shutdown step failed; going on');
      }
    }
    this.logger.info({ clean, dropped }, 'sidecar stopped');
  }

  /** Drops everything now (a failed start, tests). */
  destroy(): void {
    this.shuttingDown = true;
    for (const { listener } of this.listeners.values()) listener.destroy();
    for (const u of this.upstreams.values()) void u.close();
    this.inbound?.destroy();
    this.router?.destroy();
    void this.admin?.close();
    void this.authz.close();
    void this.tracing.shutdown().catch(() => {});
  }
}

// A listener removed by a reload frees its port asynchronously; its replacement may need a moment to bind.
async function startWithRetry(listener: LocalListener): Promise<void> {
  for (let i = 0; ; i++) {
    try {
      return await listener.start();
    } catch (err) {
      if (i >= 10 || !/EADDRINUSE/.test((err as Error).message)) throw err;
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

/** Where a listener listens and what it reaches, from the config (tunnels reach a client, not an upstream). */
function listenerInfo(
  config: SidecarConfig,
  name: string,
): { listen?: string; service?: string; upstream?: string } {
  const l = [...config.outbound.http, ...config.outbound.tcp].find((x) => x.name === name);
  if (l) return { listen: l.listen, service: l.service, upstream: l.upstream };
  const t = config.tunnels.find((x) => x.name === name);
  if (t) return { listen: t.listen, service: t.service, upstream: t.client ?? t.clientId };
  return {};
}
