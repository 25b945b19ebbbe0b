/**
 * Per-stream flow control (the geminio-node extension, used only when both sides negotiated it).
 *
 * Receive side: the peer may send at most `credit` more bytes. Credit is granted back with WindowUpdate as the
 * application consumes data (not as bytes arrive), once half a window has been consumed (hysteresis: one
 * update per half window, not per read). When the sender is starved of credit while our buffer is nearly empty,
 * the window is the bottleneck, so it doubles, up to maxWindow and the connection's budget.
 *
 * Send side: we may send at most `window` bytes; a write waits (its callback is held, so the Duplex applies
 * backpressure to the writer) until WindowUpdate gives more.
 */
import type { Connection } from '../connection/connection.js';
import { ProtocolError, StreamClosedError } from '../errors.js';
import { EXTENSION_INITIAL_WINDOW, PacketType as T } from '../frame/constants.js';
import { encodePacket } from '../frame/encode.js';

export class StreamFlow {
  /** Bytes we may still send. */
  private sendWindow = EXTENSION_INITIAL_WINDOW;
  private pending: { data: Buffer; offset: number; done: (err?: Error) => void } | undefined;
  /** Our advertised window size (grows when the sender is starved). */
  private window = EXTENSION_INITIAL_WINDOW;
  /** Bytes the peer may still send before we grant more. */
  private credit = EXTENSION_INITIAL_WINDOW;
  /** Bytes consumed by the application since the last WindowUpdate. */
  private consumed = 0;

  constructor(
    private readonly conn: Connection,
    private readonly streamId: bigint,
    /** Told how many payload bytes went onto the connection. */
    private readonly onSent: (bytes: number) => void = () => {},
  ) {}

  /** Called once the peer knows the stream: grants the configured initial window beyond the extension's floor. */
  start(): void {
    const extra = this.conn.limits.initialWindow - EXTENSION_INITIAL_WINDOW;
    if (extra > 0 && this.conn.reserveWindow(extra)) {
      this.window += extra;
      this.grant(extra);
    }
  }

  // ---- sending ----

  /**
   * Sends what the window allows; `done` runs once all of `data` is handed to the connection, or with an error
   * when the stream gives up on it (failPending, release): it always runs exactly once.
   */
  send(data: Buffer, done: (err?: Error) => void): void {
    this.pending = { data, offset: 0, done };
    this.flush();
  }

  onWindowUpdate(increment: number): void {
    this.sendWindow += increment;
    this.flush();
  }

  private flush(): void {
    const p = this.pending;
    if (!p) return;
    const max = this.conn.limits.maxStreamPayload;
    while (p.offset < p.data.length && this.sendWindow > 0) {
      const n = Math.min(max, this.sendWindow, p.data.length - p.offset);
      this.conn.sendStream(this.streamId, p.data.subarray(p.offset, p.offset + n));
      p.offset += n;
      this.sendWindow -= n;
      this.onSent(n);
    }
    if (p.offset < p.data.length) return; // the rest waits for credit
    this.pending = undefined;
    p.done();
  }

  // ---- receiving ----

  /** Counts bytes that arrived; a peer that sends past our window breaks the extension's rules. */
  onData(length: number): void {
    this.credit -= length;
    if (this.credit < 0) {
      throw new ProtocolError(`stream ${this.streamId}: peer sent ${-this.credit} bytes past the window`);
    }
  }

  /** The application consumed `length` bytes; `buffered` is what it still holds unread. */
  onConsumed(length: number, buffered: number): void {
    this.consumed += length;
    if (this.consumed < this.window / 2) return;
    let growth = 0;
    const starved = this.credit < this.window / 4 && buffered < this.window / 4;
    if (starved && this.window < this.conn.limits.maxWindow) {
      const want = Math.min(this.window, this.conn.limits.maxWindow - this.window);
      if (this.conn.reserveWindow(want)) growth = want;
    }
    this.window += growth;
    this.grant(this.consumed + growth);
    this.consumed = 0;
  }

  /** `length` bytes were dropped unread (the stream is closing): their credit goes back at once, without growth. */
  discarded(length: number): void {
    const increment = this.consumed + length;
    this.consumed = 0;
    if (increment > 0) this.grant(increment);
  }

  private grant(increment: number): void {
    this.credit += increment;
    this.conn.send(
      encodePacket({ type: T.WindowUpdate, id: this.conn.ids.next(), sessionId: this.streamId, increment }),
    );
  }

  /** A write waiting for credit that will never come: its callback gets `err` now. */
  failPending(err: Error): void {
    const p = this.pending;
    this.pending = undefined;
    p?.done(err);
  }

  /** The stream is gone: give its window growth back to the connection budget; a waiting write fails. */
  release(): void {
    this.conn.releaseWindow(this.window - EXTENSION_INITIAL_WINDOW);
    this.window = EXTENSION_INITIAL_WINDOW;
    this.failPending(new StreamClosedError('stream closed before the peer granted credit'));
  }
}
