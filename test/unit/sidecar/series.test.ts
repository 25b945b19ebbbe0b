/**
 * The bound series of observe/series.ts update prom-client's own entries: a registry updated through them exposes
 * exactly what the same updates through prom-client's public API expose, including after a series was removed or
 * the registry reset (the entry is gone: the next update recreates it through prom-client).
 */
import fc from 'fast-check';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { CounterSeries, GaugeSeries, HistogramSeries } from '../../../sidecar/observe/series.js';

type Op =
  | { kind: 'inc'; series: number; n: number }
  | { kind: 'dec'; series: number; n: number }
  | { kind: 'set'; series: number; n: number }
  | { kind: 'observe'; series: number; n: number }
  | { kind: 'remove'; series: number }
  | { kind: 'reset' };

const BUCKETS = [0, 64, 0.5, 1, 1024];
const LABELS = [
  { listener: 'web', service: 'app' },
  { listener: 'web', service: 'b' },
  { listener: 'api', service: 'app' },
];

function metrics() {
  const registry = new Registry();
  const labelNames = ['service', 'listener'];
  return {
    registry,
    counter: new Counter({ name: 'c_total', help: 'c', labelNames, registers: [registry] }),
    gauge: new Gauge({ name: 'g', help: 'g', labelNames, registers: [registry] }),
    histogram: new Histogram({
      name: 'h',
      help: 'h',
      labelNames,
      buckets: [...BUCKETS].sort((a, b) => a - b),
      registers: [registry],
    }),
  };
}

/** Applies the ops through the bound series (`bound`) or prom-client's API, and returns the exposition. */
async function apply(ops: Op[], bound: boolean): Promise<string> {
  const m = metrics();
  const counters = LABELS.map((l) => new CounterSeries(m.counter, l));
  const gauges = LABELS.map((l) => new GaugeSeries(m.gauge, l));
  const histograms = LABELS.map((l) => new HistogramSeries(m.histogram, l));
  for (const op of ops) {
    if (op.kind === 'reset') {
      m.registry.resetMetrics();
      continue;
    }
    const labels = LABELS[op.series]!;
    if (op.kind === 'remove') {
      m.counter.remove(labels);
      m.gauge.remove(labels);
      m.histogram.remove(labels);
    } else if (op.kind === 'inc') {
      if (bound) counters[op.series]!.inc(op.n);
      else m.counter.inc(labels, op.n);
      if (bound) gauges[op.series]!.inc(op.n);
      else m.gauge.inc(labels, op.n);
    } else if (op.kind === 'dec') {
      if (bound) gauges[op.series]!.dec(op.n);
      else m.gauge.dec(labels, op.n);
    } else if (op.kind === 'set') {
      if (bound) gauges[op.series]!.set(op.n);
      else m.gauge.set(labels, op.n);
    } else {
      if (bound) histograms[op.series]!.observe(op.n);
      else m.histogram.observe(labels, op.n);
    }
  }
  return m.registry.metrics();
}

const value = fc.oneof(
  fc.constantFrom(0, 0.5, 1, 64, 1024, 2048, 1e9),
  fc.double({ min: 0, max: 5000, noNaN: true }),
  fc.integer({ min: 0, max: 100 }),
);
const series = fc.integer({ min: 0, max: LABELS.length - 1 });
const op: fc.Arbitrary<Op> = fc.oneof(
  { weight: 5, arbitrary: fc.record({ kind: fc.constant('inc' as const), series, n: value }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('dec' as const), series, n: value }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('set' as const), series, n: value }) },
  { weight: 6, arbitrary: fc.record({ kind: fc.constant('observe' as const), series, n: value }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('remove' as const), series }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'reset' as const }) },
);

describe('bound series', () => {
  it('expose what the same updates through prom-client expose', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(op, { maxLength: 60 }), async (ops) => {
        expect(await apply(ops, true)).toBe(await apply(ops, false));
      }),
      { numRuns: 300 },
    );
  });

  it('a value prom-client refuses throws as it did', () => {
    const m = metrics();
    const c = new CounterSeries(m.counter, LABELS[0]!);
    c.inc();
    expect(() => c.inc(-1)).toThrow(/decrease/);
    expect(() => c.inc(Number.POSITIVE_INFINITY)).toThrow(/valid number/);
    const h = new HistogramSeries(m.histogram, LABELS[0]!);
    h.observe(1);
    expect(() => h.observe(Number.NaN)).toThrow(/valid number/);
  });
});
