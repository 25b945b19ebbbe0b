/**
 * DNS discovery of an upstream's endpoints: every A and AAAA record of a name (a headless Service, say), asked of
 * the configured resolver, again every `refreshMs`, or sooner when the shortest TTL runs out first (never sooner
 * than `minRefreshMs`). A failed lookup keeps the endpoints known so far: a DNS outage must not empty an upstream.
 */
import { Resolver } from 'node:dns/promises';
import type { DiscoveryConfig } from '../config/schema.js';
import type { Logger } from '../observe/logger.js';

/** Error codes meaning "the name has no records of this type", as opposed to a failed lookup. */
const NO_RECORDS = new Set(['ENODATA', 'ENOTFOUND', 'ENONAME']);

export interface Resolved {
  addresses: string[];
  /** The shortest TTL among the records, in seconds (undefined: no records). */
  ttl: number | undefined;
}

export class Discovery {
  private readonly resolver = new Resolver({ timeout: 2_000, tries: 2 });
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(
    private readonly cfg: DiscoveryConfig,
    private readonly log: Logger,
    /** Called with the full endpoint list (`ip:port`, sorted) after each successful lookup. */
    private readonly onEndpoints: (endpoints: string[]) => void,
  ) {
    if (cfg.resolver !== undefined) this.resolver.setServers([cfg.resolver]);
  }

  start(): void {
    void this.tick();
  }

  /** One lookup of both record types. Throws when both failed (not merely empty). */
  async resolve(): Promise<Resolved> {
    const [v4, v6] = await Promise.allSettled([
      this.resolver.resolve4(this.cfg.name, { ttl: true }),
      this.resolver.resolve6(this.cfg.name, { ttl: true }),
    ]);
    const records: Array<{ address: string; ttl: number }> = [];
    const errors: Error[] = [];
    for (const r of [v4, v6]) {
      if (r.status === 'fulfilled') records.push(...r.value);
      else if (!NO_RECORDS.has((r.reason as { code?: string }).code ?? '')) errors.push(r.reason as Error);
    }
    if (errors.length === 2 || (errors.length > 0 && records.length === 0)) throw errors[0]!;
    const addresses = [...new Set(records.map((r) => r.address))].sort();
    const ttl = records.length === 0 ? undefined : Math.min(...records.map((r) => r.ttl));
    return { addresses, ttl };
  }

  private async tick(): Promise<void> {
    if (this.stopped) return;
    let delay = this.cfg.refreshMs;
    try {
      const { addresses, ttl } = await this.resolve();
      if (ttl !== undefined && ttl > 0) delay = Math.min(delay, ttl * 1000);
      const kept = addresses.slice(0, this.cfg.maxEndpoints);
      if (kept.length < addresses.length) {
        this.log.warn({ found: addresses.length, kept: kept.length }, 'more DNS records than maxEndpoints');
      }
      if (!this.stopped) {
        this.onEndpoints(
          kept.map((a) => (a.includes(':') ? `[${a}]:${this.cfg.port}` : `${a}:${this.cfg.port}`)),
        );
      }
    } catch (err) {
      this.log.warn(
        { err: (err as Error).message, name: this.cfg.name },
        'DNS lookup failed; keeping the endpoints',
      );
    }
    if (this.stopped) return;
    this.timer = setTimeout(() => void this.tick(), Math.max(this.cfg.minRefreshMs, delay));
    this.timer.unref();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
  }
}
