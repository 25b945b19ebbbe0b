/**
 * One direction of a proxied connection: reads from `src`, applies the faults of its flow, writes to
 * `dst`. Order is always preserved because everything goes through a single FIFO queue that only the
 * pump drains.
 */
import type { Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { type Flow, type FlowFaults, XorShift32 } from './faults.js';

/** Counters a pipe reports into (the proxy's stats). */
export interface PipeCounters {
  forwarded(flow: Flow, bytes: number): void;
  dropped(bytes: number): void;
  corrupted(bytes: number): void;
}

interface Chunk {
  buf: Buffer;
  /** performance.now() at arrival; the delay fault is latency, so it counts from here. */
  at: number;
}

export class Pipe {
  private readonly queue: Chunk[] = [];
  private queued = 0;
  private srcEnded = false;
  private dstEnded = false;
  private dead = false;
  private paused = false;
  private waitingDrain = false;
  private timer: NodeJS.Timeout | null = null;
  private immediate: NodeJS.Immediate | null = null;
  private tokens = Number.NaN;
  private lastRefill = 0;
  private prng: XorShift32 | null = null;
  private prngGeneration = -1;
  private byteIndex = 0;
  private onDstEnded: (() => void) | null = null;

  /**
   * @param maxQueuedBytes bytes held back by delay/throttle/split before `src` is paused, so a slow
   *   fault cannot make the proxy buffer without bound.
   */
  constructor(
    readonly flow: Flow,
    private readonly src: Socket,
    private readonly dst: Socket,
    private readonly faults: () => FlowFaults,
    private readonly counters: PipeCounters,
    private readonly maxQueuedBytes: number,
  ) {
    src.on('data', (buf: Buffer) => this.onData(buf));
    src.on('end', () => {
      this.srcEnded = true;
      this.pump();
    });
    dst.on('drain', () => {
      if (!this.waitingDrain) return;
      this.waitingDrain = false;
      this.pump();
    });
  }

  /**
   * Calls `cb` once end-of-stream has been passed on to `dst`, or once the pipe is stopped (then
   * nothing more will be passed on); immediately if either already happened.
   */
  whenDstEnded(cb: () => void): void {
    if (this.dstEnded || this.dead) cb();
    else this.onDstEnded = cb;
  }

  /** `src` is gone (closed, possibly without a FIN): forward what is queued, then end `dst`. */
  sourceGone(): void {
    this.srcEnded = true;
    this.pump();
  }

  /** Re-evaluates after a fault change, e.g. a shorter delay or a blackhole turned off. */
  kick(): void {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    this.pump();
  }

  /**
   * Stops forwarding for good: drops what is queued and any later input, but keeps reading `src` so
   * unread bytes do not turn a later close into an RST.
   */
  stop(): void {
    if (this.dead) return;
    this.dead = true;
    this.clearTimers();
    this.dropQueue();
    if (this.paused) {
      this.paused = false;
      this.src.resume();
    }
    const cb = this.onDstEnded;
    this.onDstEnded = null;
    cb?.();
  }

  private clearTimers(): void {
    if (this.timer) clearTimeout(this.timer);
    if (this.immediate) clearImmediate(this.immediate);
    this.timer = null;
    this.immediate = null;
  }

  private dropQueue(): void {
    if (this.queued > 0) this.counters.dropped(this.queued);
    this.queue.length = 0;
    this.queued = 0;
  }

  private onData(buf: Buffer): void {
    if (this.dead || this.dstEnded) {
      this.counters.dropped(buf.length);
      return;
    }
    const f = this.faults();
    if (f.blackhole) {
      this.counters.dropped(buf.length);
      return;
    }
    const data = f.corrupt ? this.corrupt(buf, f) : buf;
    this.queue.push({ buf: data, at: performance.now() });
    this.queued += data.length;
    this.pump();
    // pump() returns early while a delay/throttle timer is pending, so check the queue bound here too.
    this.updateFlow();
  }

  private corrupt(buf: Buffer, f: FlowFaults): Buffer {
    const opts = f.corrupt;
    if (!opts) return buf;
    if (!this.prng || this.prngGeneration !== f.corruptGeneration) {
      this.prng = new XorShift32(opts.seed ?? Math.floor(Math.random() * 2 ** 32));
      this.prngGeneration = f.corruptGeneration;
      this.byteIndex = 0;
    }
    const prng = this.prng;
    // Copy: the chunk may be a view into a buffer the socket layer still owns.
    const out = Buffer.from(buf);
    let count = 0;
    const flip = (i: number) => {
      out[i] = (out[i] ?? 0) ^ (1 << (prng.next() & 7));
      count++;
    };
    const nth = opts.everyNthByte ?? 0;
    const p = opts.probability ?? 0;
    const start = this.byteIndex;
    for (let i = 0; i < out.length; i++) {
      const hitNth = nth > 0 && (start + i + 1) % nth === 0;
      const hitP = p > 0 && prng.nextFloat() < p;
      if (hitNth || hitP) flip(i);
    }
    this.byteIndex += out.length;
    if (count > 0) this.counters.corrupted(count);
    return out;
  }

  /** Forwards as much as the faults allow right now, then schedules itself to continue. */
  private pump(): void {
    if (this.dead || this.timer || this.immediate || this.waitingDrain) return;
    if (this.dst.destroyed) {
      // Its 'close' is still on the way and will stop this pipe; until then there is nowhere to write.
      this.dropQueue();
      return;
    }
    const f = this.faults();
    if (f.blackhole) this.dropQueue();
    while (this.queue.length > 0) {
      const head = this.queue[0]!;
      const wait = head.at + f.delayMs - performance.now();
      if (wait > 0) {
        this.sleep(wait);
        break;
      }
      let n = head.buf.length;
      if (f.splitMaxBytes > 0) n = Math.min(n, f.splitMaxBytes);
      if (f.throttleBytesPerSec > 0) {
        // A burst of 1/20 s keeps the output smooth; large chunks are cut down to it.
        const burst = Math.max(1, Math.floor(f.throttleBytesPerSec / 20));
        n = Math.min(n, burst);
        const now = performance.now();
        this.tokens = Number.isNaN(this.tokens)
          ? burst
          : Math.min(burst, this.tokens + ((now - this.lastRefill) / 1000) * f.throttleBytesPerSec);
        this.lastRefill = now;
        if (this.tokens < n) {
          this.sleep(((n - this.tokens) / f.throttleBytesPerSec) * 1000);
          break;
        }
        this.tokens -= n;
      }
      const piece = n === head.buf.length ? head.buf : head.buf.subarray(0, n);
      if (n === head.buf.length) this.queue.shift();
      else head.buf = head.buf.subarray(n);
      this.queued -= n;
      this.counters.forwarded(this.flow, n);
      if (!this.dst.write(piece)) {
        this.waitingDrain = true;
        break;
      }
      if (f.splitMaxBytes > 0 && this.queue.length > 0) {
        // A macrotask between pieces lets each one reach the peer as its own read.
        this.immediate = setImmediate(() => {
          this.immediate = null;
          this.pump();
        });
        break;
      }
    }
    this.updateFlow();
    // End-of-stream is held back while blackholed so it is not lost: it follows once the hole closes.
    if (this.queue.length === 0 && this.srcEnded && !this.dstEnded && !f.blackhole) {
      this.dstEnded = true;
      if (!this.dst.destroyed) this.dst.end();
      const cb = this.onDstEnded;
      this.onDstEnded = null;
      cb?.();
    }
  }

  private sleep(ms: number): void {
    this.timer = setTimeout(
      () => {
        this.timer = null;
        this.pump();
      },
      Math.max(1, Math.ceil(ms)),
    );
  }

  /** Backpressure: stop reading while `dst` is full or too much is held back by the faults. */
  private updateFlow(): void {
    const shouldPause = this.waitingDrain || this.queued >= this.maxQueuedBytes;
    if (shouldPause && !this.paused) {
      this.paused = true;
      this.src.pause();
    } else if (!shouldPause && this.paused) {
      this.paused = false;
      this.src.resume();
    }
  }
}
