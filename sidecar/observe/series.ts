/**
 * Labelled series bound once, for the metrics a request updates. prom-client's own children (`metric.labels(...)`)
 * hash their labels again on every update (and a Gauge's `set` sorts the label names and allocates a new entry
 * each time): about 7 KB of garbage per proxied request in the outbound sidecar (docs/BENCHMARKS.md, "Issue 14").
 * A series here computes prom-client's label hash once and then updates the entry prom-client keeps under it
 * (`metric.hashMap[hash]`: `{ value }` for a Counter or Gauge, `{ sum, count, bucketValues }` for a Histogram),
 * which is what prom-client's own update does after hashing. While the entry is missing (before the first update,
 * after `remove` or a registry reset) an update goes through prom-client's public API, which creates it; a value
 * prom-client would refuse goes there too, so it throws as before. test/unit/sidecar/series.test.ts checks that a
 * registry updated here exposes exactly what the same updates through prom-client's API expose.
 */

import type { Counter, Gauge, Histogram } from 'prom-client';
import { hashObject } from 'prom-client/lib/util.js';

type Labels = Record<string, string>;
interface Entry {
  value: number;
}
interface HistogramEntry {
  sum: number;
  count: number;
  bucketValues: Record<string, number>;
}
/** What prom-client's Counter, Gauge and Histogram keep (prom-client 15, pinned by package-lock.json). */
interface Store<E> {
  hashMap: Record<string, E | undefined>;
  sortedLabelNames: string[];
}
interface HistogramStore extends Store<HistogramEntry> {
  upperBounds: number[];
}

function hashOf(metric: object, labels: Labels): string {
  return hashObject(labels, (metric as Store<unknown>).sortedLabelNames);
}

/** One series of a Counter. */
export class CounterSeries {
  readonly #store: Store<Entry>;
  readonly #hash: string;

  constructor(
    readonly metric: Counter,
    readonly labels: Labels,
  ) {
    this.#store = metric as unknown as Store<Entry>;
    this.#hash = hashOf(metric, labels);
  }

  inc(n = 1): void {
    const e = this.#store.hashMap[this.#hash];
    if (e !== undefined && n >= 0 && n < Number.POSITIVE_INFINITY) e.value += n;
    else this.metric.inc(this.labels, n);
  }
}

/** One series of a Gauge. */
export class GaugeSeries {
  readonly #store: Store<Entry>;
  readonly #hash: string;

  constructor(
    readonly metric: Gauge,
    readonly labels: Labels,
  ) {
    this.#store = metric as unknown as Store<Entry>;
    this.#hash = hashOf(metric, labels);
  }

  inc(n = 1): void {
    const e = this.#store.hashMap[this.#hash];
    if (e !== undefined && typeof n === 'number') e.value += n;
    else this.metric.inc(this.labels, n);
  }

  dec(n = 1): void {
    this.inc(-n);
  }

  set(value: number): void {
    const e = this.#store.hashMap[this.#hash];
    if (e !== undefined && typeof value === 'number') e.value = value;
    else this.metric.set(this.labels, value);
  }
}

/** One series of a Histogram. */
export class HistogramSeries {
  readonly #store: HistogramStore;
  readonly #hash: string;
  /** The bucket keys prom-client's entry uses (its upper bounds as property names). */
  readonly #keys: string[];

  constructor(
    readonly metric: Histogram,
    readonly labels: Labels,
  ) {
    this.#store = metric as unknown as HistogramStore;
    this.#hash = hashOf(metric, labels);
    this.#keys = this.#store.upperBounds.map(String);
  }

  observe(value: number): void {
    const e = this.#store.hashMap[this.#hash];
    if (e === undefined || !Number.isFinite(value)) {
      this.metric.observe(this.labels, value);
      return;
    }
    e.sum += value;
    e.count += 1;
    const bounds = this.#store.upperBounds;
    for (let i = 0; i < bounds.length; i++) {
      if (value <= bounds[i]!) {
        e.bucketValues[this.#keys[i]!]! += 1;
        return;
      }
    }
  }
}
