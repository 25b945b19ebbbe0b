/**
 * The idle collector (sidecar/process.ts): one full collection (two GCs back to back) once work has stopped for
 * `idleMs` after a busy period, never while work goes on or starts, never twice for one busy period, never with
 * idleMs 0. Fake clock; the real Inflight. And on the real heap: that collection gives back the old-space pages one
 * GC leaves empty.
 */
import { execFileSync } from 'node:child_process';
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

// One collection is two calls of gc (collectFully).
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
    expect(gc).toHaveBeenCalledTimes(2);
    vi.advanceTimersByTime(10_000);
    expect(gc).toHaveBeenCalledTimes(2);
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
    expect(gc).toHaveBeenCalledTimes(2);
  });

  it('collects again after a new busy period', () => {
    work(10);
    vi.advanceTimersByTime(2_000);
    work(10);
    vi.advanceTimersByTime(2_000);
    expect(gc).toHaveBeenCalledTimes(4);
  });

  it('idleMs 0 turns it off (read at each check: a reload may change it)', () => {
    idleMs = 0;
    work(10);
    vi.advanceTimersByTime(5_000);
    expect(gc).not.toHaveBeenCalled();
    idleMs = 1_000;
    work(10);
    vi.advanceTimersByTime(2_000);
    expect(gc).toHaveBeenCalledTimes(2);
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

describe('collectFully', () => {
  /**
   * In a node process of its own (what one GC leaves depends on the heap's history, and a test runner's is not an
   * idle sidecar's): about 50 MB of objects moved to old space by a GC, then all but one in 50 dropped, so every
   * page they filled still holds a few live ones (what a load leaves: long-lived objects among the garbage); then
   * `gc` once, or collectFully. Returns old space's committed bytes when full and after.
   */
  function afterDrop(how: 'one gc' | 'collectFully'): { full: number; after: number } {
    const script = `
      import v8 from 'node:v8';
      import { collectFully, fullGc } from ${JSON.stringify(new URL('../../../sidecar/process.ts', import.meta.url).href)};
      const oldSpace = () => v8.getHeapSpaceStatistics().find((s) => s.space_name === 'old_space').space_size;
      const gc = fullGc();
      let all = [];
      for (let r = 0; r < 40; r++) {
        const a = [];
        for (let i = 0; i < 20000; i++) a.push({ i, s: 'x' + i });
        all.push(a);
      }
      gc();
      const full = oldSpace();
      const survivors = all.flatMap((a) => a.filter((_, i) => i % 50 === 0));
      all = undefined;
      if (${JSON.stringify(how)} === 'collectFully') collectFully(gc);
      else gc();
      if (survivors.length !== 16000) throw new Error('survivors');
      console.log(JSON.stringify({ full, after: oldSpace() }));
    `;
    const out = execFileSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
      encoding: 'utf8',
    });
    return JSON.parse(out.trim().split('\n').pop()!) as { full: number; after: number };
  }

  it('gives back the old-space pages that one GC leaves sparse', () => {
    // One GC frees the dead objects but not their sparse pages: they stay committed (and resident), and an idle
    // process runs no next GC.
    const one = afterDrop('one gc');
    expect(one.after).toBeGreaterThan(one.full - 10e6);
    const both = afterDrop('collectFully');
    expect(both.after).toBeLessThan(both.full - 30e6);
  });
});
