/**
 * The exchange proto: HTTP exchanges (HTTP/1.1 and HTTP/2 alike) between two sidecars on pooled, persistent geminio
 * streams, in the frames of ./h2.ts (`[type u8][length u32 BE][payload]`: HEAD JSON, DATA, TRAILERS JSON, END,
 * RESET, HELLO). One stream carries one exchange at a time and then the next one: the opener writes a request
 * (HEAD, DATA..., END or TRAILERS), the acceptor answers it (HEAD, DATA..., END or TRAILERS; or a HEAD with
 * `endStream`), and once both directions ended cleanly the stream goes back to its pool. A RESET, a malformed frame
 * or any failure closes that stream; it is never reused. Neither side parses or serializes HTTP/1.1 here: what the
 * near sidecar parsed travels as a head, and a small exchange is one stream write (so one geminio frame) each way.
 *
 * `ExchangePool` is the opener's side, one per endpoint of an outbound listener: a dispatcher with undici's
 * `dispatch(options, handler)` contract, so proxy/http.ts drives it as it drove an undici Pool (retries, errors,
 * backpressure). An inbound sidecar of a version before this proto answers the first stream's HELLO with an
 * HTTP/1.1 400 (or closes it): the pool then falls back to the `legacy` dispatcher for that endpoint.
 */
import type { Readable } from 'node:stream';
import type { Dispatcher } from 'undici';
import type { End, Stream } from '../../sdk/index.js';
import { dataFrames, encodeFrame, FrameReader, type FrameSink, FrameType, type RequestHead } from './h2.js';
import type { Dispatch } from './http.js';
import { UpstreamUnavailableError } from './http-util.js';

/** The stream-meta proto of exchange streams. */
export const EXCHANGE_PROTO = 'exchange';

/** A request's head on an exchange stream: an "h2" stream's head, and what an exchange also needs to know. */
export interface ExchangeRequestHead extends RequestHead {
  /** The client's protocol: "h2" for a request that came over HTTP/2 (gRPC), absent for HTTP/1.1. */
  v?: 'h2';
  /** False: the request has no body (END follows the head). */
  body?: boolean;
}

/** Request bodies up to this size that are already read whole go in the head's write. */
const INLINE_BODY = 16 * 1024;

/** HEAD (the JSON `head`) and END in one buffer: a request without a body, one allocation and one copy. */
function headAndEnd(head: string): Buffer {
  const len = Buffer.byteLength(head, 'utf8');
  const out = Buffer.allocUnsafe(10 + len);
  out[0] = FrameType.Head;
  out.writeUInt32BE(len, 1);
  out.write(head, 5, 'utf8');
  out[5 + len] = FrameType.End;
  out.writeUInt32BE(0, 6 + len);
  return out;
}

/** The answer's handler: undici's, plus whether the head is the whole answer (a gRPC trailers-only answer). */
export interface AnswerHandler extends Dispatcher.DispatchHandler {
  onResponseStart?(
    controller: Dispatcher.DispatchController,
    statusCode: number,
    headers: Record<string, string | string[]>,
    statusMessage?: string,
    endStream?: boolean,
  ): void;
}

/** What an exchange failed with, coded like undici's errors so that proxy/http-util's classify maps it. */
export class ExchangeError extends Error {
  override name = 'ExchangeError';
  constructor(
    message: string,
    readonly code: string,
    /** The HTTP/2 error code of a RESET from the far side (the client's stream is reset with it). */
    readonly resetCode?: number,
  ) {
    super(message);
  }
}

export interface ExchangePoolOptions {
  /** The endpoint's End now (undefined while it is down). */
  current: () => End | undefined;
  /** Opens a stream with the exchange proto (the caller counts it in its metrics). */
  open: (end: End) => Promise<Stream>;
  /** Most streams at once (busy or idle); more requests wait for one. */
  maxStreams: number;
  /** An idle stream is closed after this long. */
  keepAliveTimeoutMs: number;
  /** The shortest headers or body timeout its requests use (the coarse timer's resolution follows it). */
  minTimeoutMs: number;
  maxHeadBytes: number;
  /** The dispatcher for an endpoint whose inbound does not know the proto (made on first need). */
  legacy: () => Dispatch;
  /** Told once when this endpoint turns out to be an older inbound. */
  onLegacy?: () => void;
  describe: string;
}

type Mode = 'unknown' | 'exchange' | 'legacy';

/** One request on a pool: the undici controller its handler sees, and its state on a lane. */
class Job implements Dispatcher.DispatchController {
  lane: Lane | undefined;
  aborted = false;
  paused = false;
  reason: Error | null = null;
  /** The request was written whole (END sent). */
  requestDone = false;
  /** The answer is complete (END, TRAILERS, or a head with endStream). */
  answerDone = false;
  headSeen = false;
  /** The answer said the stream ends after it. */
  last = false;
  settled = false;
  /** When the head went out (headersTimeout) and the last answer bytes came (bodyTimeout). */
  sentAt = 0;
  lastData = 0;

  constructor(
    readonly options: Dispatcher.DispatchOptions,
    readonly handler: AnswerHandler,
    readonly pool: ExchangePool,
  ) {}

  abort(reason: Error): void {
    if (this.settled) return;
    this.aborted = true;
    this.reason = reason;
    this.pool.dequeue(this);
    this.lane?.kill(true);
    this.fail(reason);
  }

  pause(): void {
    this.paused = true;
  }

  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    this.lastData = performance.now();
    this.lane?.reader.resume();
  }

  fail(err: Error): void {
    if (this.settled) return;
    this.settled = true;
    this.handler.onResponseError?.(this, err);
  }
}

/** One persistent stream of a pool. */
class Lane implements FrameSink {
  readonly reader: FrameReader;
  job: Job | undefined;
  idleSince = performance.now();
  dead = false;
  /** Resolves the HELLO probe of the pool's first stream: true (an exchange inbound) or false (an older one). */
  probe: ((ok: boolean | Error) => void) | undefined;
  /** The request body being written, and its listeners (removed when the exchange ends). */
  private body: Readable | undefined;
  private readonly onBodyData = (chunk: Buffer) => {
    if (this.small && (this.smallBytes += chunk.length) <= INLINE_BODY) {
      this.small.push(dataFrames(chunk));
      return;
    }
    if (this.small) {
      // More than the declared length: sent as it comes.
      const pending = this.small;
      this.small = undefined;
      if (this.job) this.job.sentAt = performance.now();
      this.write(Buffer.concat(pending));
    }
    if (!this.write(dataFrames(chunk))) this.body?.pause();
  };
  private readonly onBodyEnd = () => {
    this.detachBody();
    const job = this.job;
    if (!job) return;
    const end = encodeFrame(FrameType.End);
    if (this.small) {
      job.sentAt = performance.now();
      this.write(Buffer.concat([...this.small, end]));
      this.small = undefined;
    } else this.write(end);
    this.uncork();
    this.requestWritten(job);
  };
  private readonly onBodyGone = () => {
    // The client's body broke off (the client went away): the exchange cannot complete.
    if (this.body && !this.body.readableEnded) this.job?.abort(new Error('the request body was aborted'));
  };
  private readonly onDrain = () => this.body?.resume();

  constructor(
    readonly stream: Stream,
    private readonly pool: ExchangePool,
    maxHeadBytes: number,
  ) {
    stream.on('error', () => {});
    stream.on('drain', this.onDrain);
    this.reader = new FrameReader(stream, this, maxHeadBytes, (err) => this.broken(err, true), true);
    // The far side's end (a Dismiss) is followed by the close; a stream that closed with an error (the
    // connection went away) fails the exchange with it, so that it is classified as the upstream being gone.
    stream.once('close', () => {
      const err = stream.errored;
      if (err) return this.broken(err, false);
      this.broken(
        new ExchangeError('the far side closed the stream', 'GEMINIO_SIDECAR_ERR_STREAM_CLOSED'),
        true,
      );
    });
  }

  write(buf: Buffer): boolean {
    if (this.dead || this.stream.destroyed || !this.stream.writable) return true;
    return this.stream.write(buf);
  }

  /**
   * Writes the job's request. Without a body, or with a small one of known length (collected first, at most
   * INLINE_BODY bytes), the head, the body and END are one stream write, so one geminio frame. A streamed body
   * follows its head as DATA frames; what comes in the same turn (the head, a first chunk, END: a gRPC unary call)
   * is corked into one write too.
   */
  start(job: Job): void {
    this.job = job;
    job.lane = this;
    const o = job.options;
    const body = (o.body ?? undefined) as Readable | undefined;
    const extra = o as { authority?: string; scheme?: string; h2?: boolean };
    const headers = o.headers as Record<string, string | string[]>;
    const head: ExchangeRequestHead = { method: o.method, path: o.path, headers };
    if (extra.authority !== undefined) head.authority = extra.authority;
    if (extra.scheme !== undefined) head.scheme = extra.scheme;
    if (extra.h2) head.v = 'h2';
    if (!body) head.body = false;
    this.pool.watch();
    if (!body) {
      job.sentAt = performance.now();
      this.write(headAndEnd(JSON.stringify(head)));
      return this.requestWritten(job);
    }
    const headFrame = encodeFrame(FrameType.Head, JSON.stringify(head));
    const declared = Number(headers['content-length']);
    if (Number.isFinite(declared) && declared <= INLINE_BODY) {
      this.small = [headFrame];
      this.smallBytes = 0;
    } else {
      job.sentAt = performance.now();
      this.stream.cork();
      this.write(headFrame);
      setImmediate(this.uncork);
    }
    this.body = body;
    body.on('data', this.onBodyData);
    body.once('end', this.onBodyEnd);
    body.once('close', this.onBodyGone);
    body.once('error', this.onBodyGone);
    body.resume();
  }

  /** A small body's frames, collected until its end (then written with the head in one write). */
  private small: Buffer[] | undefined;
  private smallBytes = 0;
  private readonly uncork = () => {
    if (this.stream.writableCorked > 0) this.stream.uncork();
  };

  private detachBody(): void {
    const b = this.body;
    if (!b) return;
    this.body = undefined;
    b.off('data', this.onBodyData);
    b.off('end', this.onBodyEnd);
    b.off('close', this.onBodyGone);
    b.off('error', this.onBodyGone);
  }

  private requestWritten(job: Job): void {
    job.requestDone = true;
    if (job.answerDone) this.release(job);
  }

  // ---- the answer (FrameSink) ----

  hello(): void {
    const p = this.probe;
    this.probe = undefined;
    if (p) p(true);
    else this.broken(new ExchangeError('unexpected HELLO', 'GEMINIO_SIDECAR_ERR_BAD_FRAME'), true);
  }

  head(v: unknown): void {
    const job = this.job;
    const h = v as { status?: unknown; headers?: unknown; endStream?: unknown; last?: unknown };
    if (!job || job.headSeen || typeof h.status !== 'number' || typeof h.headers !== 'object' || !h.headers) {
      return this.broken(new ExchangeError('unexpected answer head', 'GEMINIO_SIDECAR_ERR_BAD_FRAME'), true);
    }
    if (h.status < 200) return; // informational: the final answer follows
    job.headSeen = true;
    job.last = h.last === true;
    job.lastData = performance.now();
    const endStream = h.endStream === true;
    if (!job.settled)
      job.handler.onResponseStart?.(
        job,
        h.status,
        h.headers as Record<string, string | string[]>,
        '',
        endStream,
      );
    if (endStream) this.answered(job, {});
  }

  data(chunk: Buffer): boolean {
    const job = this.job;
    if (!job?.headSeen || job.answerDone) {
      this.broken(new ExchangeError('unexpected DATA', 'GEMINIO_SIDECAR_ERR_BAD_FRAME'), true);
      return true;
    }
    job.lastData = performance.now();
    if (!job.settled) job.handler.onResponseData?.(job, chunk);
    return !job.paused;
  }

  trailers(t: Record<string, string | string[]>): void {
    this.answerEnd(t);
  }

  end(): void {
    this.answerEnd({});
  }

  private answerEnd(trailers: Record<string, string | string[]>): void {
    const job = this.job;
    if (!job?.headSeen || job.answerDone) {
      return this.broken(new ExchangeError('unexpected END', 'GEMINIO_SIDECAR_ERR_BAD_FRAME'), true);
    }
    this.answered(job, trailers);
  }

  private answered(job: Job, trailers: Record<string, string | string[]>): void {
    job.answerDone = true;
    if (!job.settled) {
      job.settled = true;
      job.handler.onResponseEnd?.(job, trailers);
    }
    // The answer ended before the request was written whole (an early answer to a body): the rest of the request
    // cannot be taken back, so the stream is reset rather than reused.
    if (!job.requestDone) return this.kill(true);
    // The far side ends the stream after this exchange (a refused stream, a retiring service).
    if (job.last) return this.kill(false);
    this.release(job);
  }

  reset(code: number): void {
    this.broken(
      new ExchangeError('the far side reset the exchange', 'GEMINIO_SIDECAR_ERR_RESET', code),
      false,
    );
  }

  private release(job: Job): void {
    if (this.job !== job) return;
    this.job = undefined;
    job.lane = undefined;
    // An answer whose last DATA filled the client's stream paused the reader, and the client's 'drain' now finds
    // no lane to resume: resumed here, or the next exchange on this stream would never be read.
    if (job.paused) this.reader.resume();
    this.detachBody();
    this.idleSince = performance.now();
    this.pool.released(this);
  }

  /** Stops using the stream: a RESET for the exchange in flight when `reset`, then the stream ends. */
  kill(reset: boolean): void {
    if (this.dead) return;
    this.small = undefined;
    if (reset) this.write(encodeFrame(FrameType.Reset, JSON.stringify({ code: 8 })));
    this.uncork();
    this.dead = true;
    this.detachBody();
    this.stream.end();
    this.pool.removed(this);
    // A stream that never answers the Dismiss is not waited for; one that closes in time takes its timer along.
    const s = this.stream;
    if (s.closed) return;
    const t = setTimeout(() => s.destroy(), 5_000).unref();
    s.once('close', () => clearTimeout(t));
  }

  /** The stream failed (closed, ended, a bad frame): the exchange in flight fails with `err`. */
  broken(err: Error, clean: boolean): void {
    const p = this.probe;
    this.probe = undefined;
    if (p) p(clean ? false : err);
    const job = this.job;
    this.job = undefined;
    if (!this.dead) {
      this.dead = true;
      this.detachBody();
      this.stream.destroy();
      this.pool.removed(this);
    }
    if (job && !job.settled) {
      if (job.answerDone) return;
      job.fail(err);
    }
  }
}

/** The exchange streams to one endpoint. */
export class ExchangePool implements Dispatch {
  private mode: Mode = 'unknown';
  private probing: Promise<Mode> | undefined;
  private readonly lanes = new Set<Lane>();
  private readonly idle: Lane[] = [];
  private readonly waiting: Job[] = [];
  private opening = 0;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  private legacyDispatcher: Dispatch | undefined;
  /** Streams opened over the pool's life (tests and diagnostics). */
  opened = 0;

  constructor(private readonly o: ExchangePoolOptions) {}

  /** true (exchange streams) or false (an older inbound) once known; undefined before the first `negotiate`. */
  get negotiated(): boolean | undefined {
    return this.mode === 'unknown' ? undefined : this.mode === 'exchange';
  }

  /** Whether the endpoint speaks the exchange proto: probes it with the first stream when not known yet. */
  async negotiate(): Promise<boolean> {
    if (this.mode === 'unknown') this.mode = await this.probe();
    return this.mode === 'exchange';
  }

  get legacy(): Dispatch {
    this.legacyDispatcher ??= this.o.legacy();
    return this.legacyDispatcher;
  }

  dispatch(options: Dispatcher.DispatchOptions, handler: AnswerHandler): boolean {
    if (this.mode === 'legacy') return this.legacy.dispatch(options, handler);
    const job = new Job(options, handler, this);
    handler.onRequestStart?.(job, {});
    if (job.aborted) return true;
    if (this.mode === 'exchange') {
      this.acquire(job);
      return true;
    }
    this.negotiate().then(
      (ok) => {
        if (job.settled) return;
        if (ok) this.acquire(job);
        else {
          job.settled = true; // the legacy dispatcher tells the handler from now on
          this.legacy.dispatch(options, handler);
        }
      },
      (err: Error) => job.fail(err),
    );
    return true;
  }

  /** Opens the first stream and sends HELLO: an exchange inbound echoes it; an older one answers HTTP or closes. */
  private probe(): Promise<Mode> {
    this.probing ??= (async (): Promise<Mode> => {
      try {
        const lane = await this.openLane();
        const answer = await new Promise<boolean | Error>((resolve) => {
          lane.probe = resolve;
          lane.write(encodeFrame(FrameType.Hello));
        });
        if (answer instanceof Error) throw answer;
        if (!answer) {
          this.o.onLegacy?.();
          return 'legacy';
        }
        this.released(lane);
        return 'exchange';
      } finally {
        this.probing = undefined;
      }
    })();
    return this.probing;
  }

  private async openLane(): Promise<Lane> {
    const end = this.o.current();
    if (!end) throw new UpstreamUnavailableError(`${this.o.describe} is not connected`);
    this.opening++;
    try {
      const stream = await this.o.open(end);
      this.opened++;
      const lane = new Lane(stream, this, this.o.maxHeadBytes);
      this.lanes.add(lane);
      if (this.closed) lane.kill(false);
      return lane;
    } finally {
      this.opening--;
    }
  }

  private acquire(job: Job): void {
    const lane = this.idle.pop();
    if (lane) return lane.start(job);
    if (this.lanes.size + this.opening >= this.o.maxStreams) {
      this.waiting.push(job);
      return;
    }
    this.openLane().then(
      (l) => {
        if (job.settled) return this.released(l);
        if (l.dead)
          return job.fail(new ExchangeError('the stream closed', 'GEMINIO_SIDECAR_ERR_STREAM_CLOSED'));
        l.start(job);
      },
      (err: Error) => {
        job.fail(err);
        this.next();
      },
    );
  }

  /** Starts the next waiting request when there is room (a lane freed or gone). */
  private next(): void {
    while (this.waiting.length > 0) {
      const lane = this.idle.pop();
      if (lane) return lane.start(this.waiting.shift()!);
      if (this.lanes.size + this.opening >= this.o.maxStreams) return;
      this.acquire(this.waiting.shift()!);
    }
  }

  dequeue(job: Job): void {
    const i = this.waiting.indexOf(job);
    if (i >= 0) this.waiting.splice(i, 1);
  }

  released(lane: Lane): void {
    if (lane.dead) return;
    if (this.closed) return lane.kill(false);
    const job = this.waiting.shift();
    if (job) return lane.start(job);
    this.idle.push(lane);
    this.watch();
  }

  removed(lane: Lane): void {
    this.lanes.delete(lane);
    const i = this.idle.indexOf(lane);
    if (i >= 0) this.idle.splice(i, 1);
    if (!this.closed) this.next();
  }

  /**
   * One coarse timer per pool (not two per request): the headers and body timeouts of the exchanges in flight,
   * and the keep-alive of idle streams. It runs while the pool has streams.
   */
  watch(): void {
    if (this.timer || this.lanes.size === 0) return;
    const o = this.o;
    const tick = Math.min(1_000, Math.max(25, Math.min(o.keepAliveTimeoutMs, o.minTimeoutMs) / 4));
    this.timer = setInterval(() => this.sweep(), tick);
    this.timer.unref();
  }

  private sweep(): void {
    const now = performance.now();
    for (const lane of [...this.lanes]) {
      const job = lane.job;
      if (!job) {
        if (now - lane.idleSince >= this.o.keepAliveTimeoutMs) lane.kill(false);
        continue;
      }
      const o = job.options;
      if (!job.headSeen && o.headersTimeout && job.sentAt > 0 && now - job.sentAt >= o.headersTimeout) {
        lane.kill(true);
        job.fail(new ExchangeError('headers timeout', 'UND_ERR_HEADERS_TIMEOUT'));
      } else if (job.headSeen && !job.paused && o.bodyTimeout && now - job.lastData >= o.bodyTimeout) {
        lane.kill(true);
        job.fail(new ExchangeError('body timeout', 'UND_ERR_BODY_TIMEOUT'));
      }
    }
    if (this.lanes.size === 0 && this.timer) {
      clearInterval(this.timer);
      this.timer = undefined;
    }
  }

  /** Streams in the pool now (busy and idle). */
  get size(): number {
    return this.lanes.size;
  }

  /** Idle streams end now, busy ones once their exchange is done; waiting requests fail. */
  async close(): Promise<void> {
    this.closed = true;
    for (const l of this.idle.splice(0)) l.kill(false);
    for (const j of this.waiting.splice(0)) j.fail(new UpstreamUnavailableError(`${this.o.describe} closed`));
    // The timer stays while busy streams finish: their headers and body timeouts still hold (sweep() stops it
    // once the last stream is gone).
    const legacy = this.legacyDispatcher as { close?: () => Promise<void> } | undefined;
    await legacy?.close?.().catch(() => {});
  }

  destroy(): void {
    this.closed = true;
    for (const j of this.waiting.splice(0)) j.fail(new UpstreamUnavailableError(`${this.o.describe} closed`));
    for (const l of [...this.lanes])
      l.broken(new ExchangeError('the pool closed', 'GEMINIO_SIDECAR_ERR_STREAM_CLOSED'), false);
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    const legacy = this.legacyDispatcher as { destroy?: () => Promise<void> } | undefined;
    void legacy?.destroy?.().catch(() => {});
  }
}
