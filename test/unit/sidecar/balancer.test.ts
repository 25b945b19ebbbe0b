/** The balancer alone, with a fake clock and a seeded random source: P2C over in-flight x EWMA, and ejection. */
import { describe, expect, it } from 'vitest';
import type { BalancingConfig } from '../../../sidecar/config/schema.js';
import { Balancer, type Candidate, EndpointStats } from '../../../sidecar/outbound/balancer.js';

const cfg: BalancingConfig = {
  minReady: 1,
  ejectAfter: 3,
  ejectBaseMs: 1_000,
  ejectMaxMs: 4_000,
  ewmaDecayMs: 10_000,
  drainMs: 1_000,
};

/** A small deterministic generator (mulberry32), so the shares below are the same on every run. */
function seeded(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function setup(n: number) {
  let now = 0;
  const b = new Balancer(cfg, () => now, seeded(7));
  const cands: Candidate[] = Array.from({ length: n }, (_, i) => ({
    stats: new EndpointStats(`e${i}`),
    usable: true,
  }));
  return { b, cands, tick: (ms: number) => (now += ms) };
}

/**
 * Steady load with `concurrency` requests open at a time: each pick completes after the latency of its endpoint.
 * Returns the picks per endpoint.
 */
function run(
  n: number,
  latency: (id: string) => number,
  concurrency = 8,
  picks = 30_000,
): Record<string, number> {
  const { b, cands, tick } = setup(n);
  const open: Array<{ s: EndpointStats; endsAt: number; ms: number }> = [];
  const count: Record<string, number> = {};
  let t = 0;
  for (let i = 0; i < picks; i++) {
    while (open.length >= concurrency) {
      open.sort((x, y) => x.endsAt - y.endsAt);
      const first = open.shift()!;
      tick(first.endsAt - t);
      t = first.endsAt;
      b.done(first.s, { ok: true, ms: first.ms });
    }
    const s = b.pick(cands)!;
    count[s.id] = (count[s.id] ?? 0) + 1;
    const ms = latency(s.id);
    open.push({ s, endsAt: t + ms, ms });
  }
  return count;
}

describe('Balancer', () => {
  it('shares equal endpoints within 10% under steady load', () => {
    const c = run(3, () => 5);
    for (const id of ['e0', 'e1', 'e2']) {
      expect(c[id]!).toBeGreaterThan(10_000 * 0.9);
      expect(c[id]!).toBeLessThan(10_000 * 1.1);
    }
  });

  it('sends less to a slow endpoint', () => {
    const c = run(3, (id) => (id === 'e2' ? 50 : 5));
    expect(c.e2!).toBeLessThan(c.e0! / 4);
  });

  it('never picks an unusable endpoint, and none when all are', () => {
    const { b, cands } = setup(3);
    cands[1]!.usable = false;
    for (let i = 0; i < 100; i++) {
      const s = b.pick(cands)!;
      expect(s.id).not.toBe('e1');
      b.done(s, { ok: true, ms: 1 });
    }
    for (const c of cands) c.usable = false;
    expect(b.pick(cands)).toBeUndefined();
  });

  it('ejects after consecutive failures, probes once after the backoff, backs off longer when the probe fails', () => {
    const { b, cands, tick } = setup(2);
    const e0 = cands[0]!.stats;
    // Three units of work on e0 fail in a row (done() reports whether that ejected it).
    expect(b.done(e0, { ok: false })).toBe(false);
    expect(b.done(e0, { ok: false })).toBe(false);
    expect(b.done(e0, { ok: false })).toBe(true);
    expect(e0.health).toBe('ejected');
    for (let i = 0; i < 20; i++) {
      const s = b.pick(cands)!;
      expect(s.id).toBe('e1');
      b.done(s, { ok: true, ms: 1 });
    }
    tick(1_000);
    // The backoff is over: the next pick is the probe, and only one probe at a time.
    const probe = b.pick(cands)!;
    expect(probe.id).toBe('e0');
    expect(e0.health).toBe('probing');
    expect(b.pick(cands)!.id).toBe('e1');
    expect(b.done(probe, { ok: false })).toBe(true);
    tick(1_999);
    expect(b.pick(cands)!.id).toBe('e1'); // the second ejection lasts 2 s
    tick(1);
    const again = b.pick(cands)!;
    expect(again.id).toBe('e0');
    b.done(again, { ok: true, ms: 1 });
    expect(e0.health).toBe('ready');
    expect(e0.consecutiveFailures).toBe(0);
  });

  it('excludes endpoints already tried', () => {
    const { b, cands } = setup(2);
    expect(b.pick(cands, new Set(['e0']))!.id).toBe('e1');
    expect(b.pick(cands, new Set(['e0', 'e1']))).toBeUndefined();
  });
});
