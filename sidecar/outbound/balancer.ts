/**
 * The balancer of one upstream's endpoints, per unit of work: power of two choices over a cost made of the work in
 * flight and a peak-sensitive latency EWMA (as Linkerd balances: cost = ewma x (outstanding + 1)); and outlier
 * ejection: `ejectAfter` consecutive failures take an endpoint out for a backoff (doubling up to a maximum), after
 * which one unit of work probes it; a success brings it back, a failure ejects it again for longer.
 *
 * Pure state and arithmetic with an injectable clock and random source, so a unit test drives it without sockets.
 */
import type { BalancingConfig } from '../config/schema.js';

export type EndpointHealth = 'ready' | 'ejected' | 'probing';

/** What the balancer keeps about one endpoint. */
export class EndpointStats {
  outstanding = 0;
  /** Latency EWMA in ms; undefined until the first sample (then the upstream's mean stands in for it). */
  ewma: number | undefined;
  private lastSample = 0;
  consecutiveFailures = 0;
  ejections = 0;
  requests = 0;
  failures = 0;
  health: EndpointHealth = 'ready';
  ejectedUntil = 0;

  constructor(readonly id: string) {}

  sample(ms: number, now: number, decayMs: number): void {
    if (this.ewma === undefined || ms > this.ewma) {
      // Peak-sensitive: a slower answer counts at once, a faster one is averaged in with the time since the last.
      this.ewma = ms;
    } else {
      const w = Math.exp(-(now - this.lastSample) / decayMs);
      this.ewma = this.ewma * w + ms * (1 - w);
    }
    this.lastSample = now;
  }
}

export interface Candidate {
  stats: EndpointStats;
  /** Connected and not draining. */
  usable: boolean;
}

export type Outcome = { ok: true; ms: number } | { ok: false; ms?: number } | { neutral: true };

export class Balancer {
  constructor(
    private readonly cfg: BalancingConfig,
    private readonly now: () => number = () => performance.now(),
    private readonly random: () => number = Math.random,
  ) {}

  /** May this endpoint take work now? An ejected one whose backoff is over takes exactly one probe. */
  private eligible(s: EndpointStats, t: number): boolean {
    if (s.health === 'ready') return true;
    if (s.health === 'ejected') return t >= s.ejectedUntil;
    return false; // probing: its one probe is in flight
  }

  /** Connected, not excluded, and eligible now. */
  private open(c: Candidate, t: number, exclude: ReadonlySet<string> | undefined): boolean {
    return c.usable && !exclude?.has(c.stats.id) && this.eligible(c.stats, t);
  }

  /** Picks one endpoint (P2C) among the usable, eligible ones not in `exclude`; undefined when none is. */
  pick(candidates: readonly Candidate[], exclude?: ReadonlySet<string>): EndpointStats | undefined {
    const t = this.now();
    // Loops, not filter/find: this runs per request, and most upstreams have one endpoint (no array is made then).
    let first: EndpointStats | undefined;
    let probe: EndpointStats | undefined;
    let n = 0;
    for (const c of candidates) {
      if (!this.open(c, t, exclude)) continue;
      n++;
      first ??= c.stats;
      // An ejected endpoint whose backoff is over is probed first: one unit of work tells whether it is back.
      if (probe === undefined && c.stats.health === 'ejected') probe = c.stats;
    }
    if (first === undefined) return undefined;
    let chosen: EndpointStats;
    if (probe) {
      chosen = probe;
      chosen.health = 'probing';
    } else if (n === 1) {
      chosen = first;
    } else {
      const open: EndpointStats[] = [];
      for (const c of candidates) if (this.open(c, t, exclude)) open.push(c.stats);
      const i = Math.floor(this.random() * open.length);
      let j = Math.floor(this.random() * (open.length - 1));
      if (j >= i) j++;
      const a = open[i]!;
      const b = open[j]!;
      const mean = this.meanEwma(candidates);
      chosen = this.cost(a, mean) <= this.cost(b, mean) ? a : b;
    }
    chosen.outstanding++;
    chosen.requests++;
    return chosen;
  }

  private cost(s: EndpointStats, mean: number): number {
    return (s.ewma ?? mean) * (s.outstanding + 1);
  }

  private meanEwma(candidates: readonly Candidate[]): number {
    let sum = 0;
    let n = 0;
    for (const c of candidates) {
      if (c.stats.ewma === undefined) continue;
      sum += c.stats.ewma;
      n++;
    }
    return n === 0 ? 1 : sum / n;
  }

  /** The unit of work picked on `s` ended. Returns true when this outcome ejected the endpoint. */
  done(s: EndpointStats, outcome: Outcome): boolean {
    s.outstanding = Math.max(0, s.outstanding - 1);
    const t = this.now();
    if ('neutral' in outcome) {
      if (s.health === 'probing') s.health = 'ejected'; // the probe told nothing: probe again
      return false;
    }
    if (outcome.ok) {
      s.sample(outcome.ms, t, this.cfg.ewmaDecayMs);
      s.consecutiveFailures = 0;
      if (s.health !== 'ready') s.health = 'ready';
      return false;
    }
    s.failures++;
    s.consecutiveFailures++;
    if (outcome.ms !== undefined) s.sample(outcome.ms, t, this.cfg.ewmaDecayMs);
    if (s.health === 'probing' || (s.health === 'ready' && s.consecutiveFailures >= this.cfg.ejectAfter)) {
      this.eject(s, t);
      return true;
    }
    return false;
  }

  private eject(s: EndpointStats, t: number): void {
    const backoff = Math.min(this.cfg.ejectMaxMs, this.cfg.ejectBaseMs * 2 ** Math.min(s.ejections, 20));
    s.ejections++;
    s.health = 'ejected';
    s.ejectedUntil = t + backoff;
  }

  /**
   * A reconnected endpoint takes work again at once: its failures belonged to the connection that went. Its
   * ejection count stays, so one that keeps failing is ejected for longer each time.
   */
  reset(s: EndpointStats): void {
    s.consecutiveFailures = 0;
    s.health = 'ready';
  }
}
