/**
 * The idle collector (sidecar/process.ts): one full GC once work has stopped for `idleMs` after a busy period, never
 * while work goes on or starts, never twice for one busy period, never with idleMs 0. Fake clock; the real Inflight.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { fullGc, idleCollector } from '../../../sidecar/process.js';
import { Inflight } from '../../../sidecar/proxy/inflight.js';

let inflight: Inflight;
let gc: ReturnType<typeof vi.fn<() => void>>;
let stop: () => void;
let idleMs = 1_000;

beforeEach(() => {
  vi.useFakeTimers();
  inflight = new Inflight();
  gc = vi.fn<() => void>();
  idleMs = 1_000;
  ({ stop } = idleCollector({ inflight, idleMs: () => idleMs, gc, checkEveryMs: 100 }));
});
afterEach(() => {
  stop();
  vi.useRealTimers();
});

/** One unit of work that lasts `ms`. */
function work(ms: number): void {
  const done = inflight.begin();
  setTimeout(done, ms);
}

describe('idle collector', () => {
  it('does nothing on a process that never worked', () => {
    vi.advanceTimersByTime(10_000);
    expect(gc).not.toHaveBeenCalled();
  });

  it('collects once, idleMs after the last work ended', () => {
    work(300);
    vi.advanceTimersByTime(300 + 900);
    expect(gc).not.toHaveBeenCalled();
    vi.advanceTimersByTime(400);
    expect(gc).toHaveBeenCalledTimes(1);
    vi.advanceTimersByTime(10_000);
    expect(gc).toHaveBeenCalledTimes(1);
  });

  it('never collects while work keeps starting or is in flight', () => {
    for (let t = 0; t < 5_000; t += 200) setTimeout(() => work(50), t);
    vi.advanceTimersByTime(5_000);
    expect(gc).not.toHaveBeenCalled();
    const long = inflight.begin();
    vi.advanceTimersByTime(5_000);
    expect(gc).not.toHaveBeenCalled();
    long();
    vi.advanceTimersByTime(1_300);
    expect(gc).toHaveBeenCalledTimes(1);
  });

  it('collects again after a new busy period', () => {
    work(10);
    vi.advanceTimersByTime(2_000);
    work(10);
    vi.advanceTimersByTime(2_000);
    expect(gc).toHaveBeenCalledTimes(2);
  });

  it('idleMs 0 turns it off (read at each check: a reload may change it)', () => {
    idleMs = 0;
    work(10);
    vi.advanceTimersByTime(5_000);
    expect(gc).not.toHaveBeenCalled();
    idleMs = 1_000;
    work(10);
    vi.advanceTimersByTime(2_000);
    expect(gc).toHaveBeenCalledTimes(1);
  });
});

describe('fullGc', () => {
  it('returns a working full collection without --expose-gc on the command line', async () => {
    vi.useRealTimers();
    const collect = fullGc();
    expect(typeof collect).toBe('function');
    let weak: WeakRef<object> | undefined;
    (() => {
      weak = new WeakRef({ big: new Array(1000).fill(0) });
    })();
    // A WeakRef's target is kept until the end of the job that made it.
    await new Promise((r) => setImmediate(r));
    collect();
    expect(weak!.deref()).toBeUndefined();
  });
});
