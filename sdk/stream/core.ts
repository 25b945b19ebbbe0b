/**
 * The stream core: one multiplexed stream's bytes and its close exchange, as a Node Duplex. It never touches the
 * socket: it sends frames through its Connection and receives packets from the Session. It knows nothing of RPC or
 * messaging (the channel layer, sdk/channel/stream.ts, adds them).
 *
 * Closing is the 4-way Dismiss exchange: each side sends Dismiss once and acknowledges the other's. `end()` flushes
 * what was written, then sends Dismiss. There is no half-close on the wire: with the default `allowHalfOpen: false`
 * a stream whose peer dismissed it flushes what was already written and answers with its own Dismiss at once, as Go
 * does. With `allowHalfOpen: true` it keeps its writable side until the application calls `end()`.
 *
 * The readable side ends after everything the peer sent. A geminio-node peer sends its Dismiss after its data, so
 * that is at its Dismiss. A Go peer's Dismiss can overtake data it wrote just before (Go queues stream writes but
 * sends Dismiss directly), so with a Go peer data after its Dismiss is still delivered, and the readable side ends
 * at the first of: the exchange is complete (after that Go sends nothing more), `dismissGrace` after the peer's
 * Dismiss when we keep our writable side open (half-open), or `closeTimeout`. Go drops its own queued writes once
 * the exchange is complete, so to a Go peer's Dismiss we answer after `dismissGrace`, not at once.
 *
 * Every exchange ends: the close timer starts at the first Dismiss in either direction, and when it fires the
 * stream is finalized; writes still waiting (for socket drain or for flow-control credit) fail with
 * StreamClosedError.
 */
import { Duplex } from 'node:stream';
import type { Connection } from '../connection/connection.js';
import { channels } from '../diag.js';
import { ConnectionClosedError, type GeminioError, ProtocolError, StreamClosedError } from '../errors.js';
import { PacketType as T } from '../frame/constants.js';
import { encodePacket } from '../frame/encode.js';
import { StreamFlow } from './flow.js';

/**
 * Where a stream is in its Dismiss exchange. Each side sends Dismiss once and acknowledges the other's:
 *
 *   open ──send──▶ dismissSent ──ack──▶ dismissAcked ──peer's Dismiss──▶ finalized
 *     │               │ peer's Dismiss                                       ▲
 *     │               ▼                                                      │
 *     └─peer's──▶ dismissReceived ──send──▶ bothDismissed ──────ack──────────┘
 *
 * `finalized` is also reached early (closeTimeout, a lost connection, a stream destroyed on a closed connection);
 * then `closedFrom` remembers the state it left. A DismissAck for a Dismiss we never sent is a protocol error.
 */
export type StreamState =
  | 'open'
  | 'dismissSent'
  | 'dismissAcked'
  | 'dismissReceived'
  | 'bothDismissed'
  | 'finalized';

type StreamEvent = 'send' | 'dismiss' | 'ack';

const transitions: Record<StreamState, Partial<Record<StreamEvent, StreamState>>> = {
  open: { send: 'dismissSent', dismiss: 'dismissReceived' },
  dismissSent: { ack: 'dismissAcked', dismiss: 'bothDismissed' },
  dismissAcked: { dismiss: 'finalized' },
  dismissReceived: { send: 'bothDismissed' },
  bothDismissed: { ack: 'finalized' },
  finalized: {},
};

const sent: ReadonlySet<StreamState | undefined> = new Set<StreamState | undefined>([
  'dismissSent',
  'dismissAcked',
  'bothDismissed',
  undefined,
]);
const received: ReadonlySet<StreamState | undefined> = new Set<StreamState | undefined>([
  'dismissReceived',
  'bothDismissed',
  undefined,
]);

/** @internal */
export interface StreamInit {
  conn: Connection;
  streamId: bigint;
  meta: Buffer;
  peer: string | undefined;
  /** Called once when the Dismiss exchange is complete (or abandoned) and the ID can be forgotten. */
  onFinalized: (stream: StreamCore) => void;
  allowHalfOpen?: boolean;
  /** The End this stream is reported under on the diagnostics channels (none for the End's default stream). */
  owner?: object | undefined;
  /** The End's default stream: told at once when the peer dismisses it (a reconnecting End parks new work). */
  onPeerDismiss?: (() => void) | undefined;
  /**
   * The End's default stream: the peer's Dismiss ends the writable side of the End (its facade), which then ends
   * this stream, instead of this stream ending itself (and discarding what the End still buffers).
   */
  onEndedByPeer?: (() => void) | undefined;
}

export class StreamCore extends Duplex {
  /** The ID both sides use for this stream; 1 for the End's default stream. */
  readonly streamId: bigint;
  /** Meta given by the opener. */
  readonly meta: Buffer;
  /** Free-form peer string given by the opener (Go's OpenStreamOptions.SetPeer). */
  readonly peer: string | undefined;

  /** @internal What the stream sends through: its connection, for the stream's whole life. */
  readonly conn: Connection;
  private readonly onFinalized: (stream: StreamCore) => void;
  #state: StreamState = 'open';
  /** The state a stream finalized early from; undefined after a complete exchange. */
  #closedFrom: StreamState | undefined;
  /** The End the stream is reported under on diagnostics channels; undefined: not reported. */
  readonly #owner: object | undefined;
  readonly #onPeerDismiss: (() => void) | undefined;
  readonly #onEndedByPeer: (() => void) | undefined;
  /** @internal Payload bytes received from the peer (handed to the readable side). */
  bytesIn = 0;
  /** @internal Payload bytes sent to the peer (framed onto the connection). */
  bytesOut = 0;
  private closeTimer: NodeJS.Timeout | undefined;
  /** A Go peer dismissed: ends the readable side (half-open) or answers (otherwise) after `dismissGrace`. */
  private graceTimer: NodeJS.Timeout | undefined;
  /**
   * @internal An accepted stream not yet handed to the application: what the peer's Dismiss means for our writable
   * side (answer at once, or half-open) waits until the acceptor has chosen allowHalfOpen.
   */
  awaitingAccept = false;
  /** Our writable side was ended because the peer dismissed the stream (later writes are discarded). */
  private endedByPeer = false;
  /** We pushed the end of the readable side (nothing the peer sends later is delivered). */
  private readEnded = false;
  /** `unread` is still counted in the connection's buffer budget (until finalized; peers without flow control). */
  private countsBudget = true;
  /** Per-stream windows when the extension was negotiated; undefined with a Go peer. */
  private readonly flow: StreamFlow | undefined;
  /** Bytes pushed to the readable buffer and not yet read (counted against the connection's budget). */
  private unread = 0;
  /** Running total of bytes read() took out of the buffer (to tell them from chunks handed straight over). */
  private takenByRead = 0;

  /** @internal Streams are made by the Session. */
  constructor(init: StreamInit) {
    super({
      allowHalfOpen: init.allowHalfOpen ?? false,
      readableHighWaterMark: init.conn.limits.streamHighWaterMark,
      writableHighWaterMark: init.conn.limits.maxStreamPayload,
    });
    this.conn = init.conn;
    this.streamId = init.streamId;
    this.meta = init.meta;
    this.peer = init.peer;
    this.onFinalized = init.onFinalized;
    this.#owner = init.owner;
    this.#onPeerDismiss = init.onPeerDismiss;
    this.#onEndedByPeer = init.onEndedByPeer;
    this.flow = init.conn.flowControl
      ? new StreamFlow(init.conn, init.streamId, (n) => this.sent(n))
      : undefined;
  }

  /** `n` payload bytes were framed onto the connection. */
  private sent(n: number): void {
    this.bytesOut += n;
    if (this.#owner && channels.streamBytesOut.hasSubscribers) {
      channels.streamBytesOut.publish({ stream: this, bytes: n });
    }
  }

  /** @internal Where the Dismiss exchange is. */
  get exchangeState(): StreamState {
    return this.#state;
  }

  /** One transition of the Dismiss exchange; false when `event` means nothing in this state. */
  #transition(event: StreamEvent): boolean {
    const next = transitions[this.#state][event];
    if (next === undefined) return false;
    this.#state = next;
    return true;
  }

  /** Finalizes now, remembering where the exchange stood. */
  #forceFinalized(): void {
    if (this.#state === 'finalized') return;
    this.#closedFrom = this.#state;
    this.#state = 'finalized';
  }

  /** We sent our Dismiss (now or before the stream finalized). */
  private get sentDismiss(): boolean {
    return sent.has(this.#state === 'finalized' ? this.#closedFrom : this.#state);
  }

  /** The peer dismissed the stream (now or before it finalized). */
  private get gotDismiss(): boolean {
    return received.has(this.#state === 'finalized' ? this.#closedFrom : this.#state);
  }

  private get finalized(): boolean {
    return this.#state === 'finalized';
  }

  /** @internal The peer knows the stream now (SessionAck sent or received): window extras may be granted. */
  opened(): void {
    this.flow?.start();
  }

  /** Reads from the buffer; what leaves it is what the application consumed (credit, connection budget). */
  // biome-ignore lint/suspicious/noExplicitAny: Readable.read() is typed `any` in @types/node; we return it as is.
  override read(size?: number): any {
    const before = this.readableLength;
    const chunk = super.read(size);
    const taken = before - this.readableLength;
    if (taken > 0) {
      this.takenByRead += taken;
      this.consumed(taken);
    }
    return chunk;
  }

  private consumed(n: number): void {
    this.unread -= n;
    if (!this.flow) {
      if (this.countsBudget) this.conn.releaseBuffered(n);
      return;
    }
    if (this.finalized || this.gotDismiss) return;
    this.flow.onConsumed(n, this.readableLength);
  }

  /** @internal WindowUpdate from the peer. */
  receiveWindowUpdate(increment: number): void {
    if (!this.flow) throw new ProtocolError('WindowUpdate without the flow-control extension');
    this.flow.onWindowUpdate(increment);
  }

  /** The ClientID of the connection this stream belongs to. */
  get clientId(): bigint {
    return this.conn.clientId;
  }

  /** True once the Dismiss exchange is over (or was abandoned); the stream ID is then forgotten. */
  get isFinalized(): boolean {
    return this.finalized;
  }

  // ---- Duplex ----

  /**
   * A write after the peer's Dismiss ended our writable side is discarded, as a closed socket discards it: its
   * callback gets StreamClosedError, and no 'error' event (which would crash a process that did not expect the
   * peer to close).
   */
  override write(
    chunk: unknown,
    encoding?: BufferEncoding | ((error: Error | null | undefined) => void),
    cb?: (error: Error | null | undefined) => void,
  ): boolean {
    if (this.endedByPeer && !this.destroyed) return discardWrite(encoding, cb);
    return typeof encoding === 'function'
      ? super.write(chunk, encoding)
      : super.write(chunk, encoding as BufferEncoding, cb);
  }

  override _read(): void {
    this.conn.resumeReading(this);
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.sendData(chunk, cb);
  }

  override _writev(chunks: Array<{ chunk: Buffer }>, cb: (err?: Error | null) => void): void {
    // Many small writes (a 1-byte write loop) become few packets instead of one 23-byte frame each.
    let total = 0;
    for (const c of chunks) total += c.chunk.length;
    const data =
      chunks.length === 1
        ? chunks[0]!.chunk
        : Buffer.concat(
            chunks.map((c) => c.chunk),
            total,
          );
    this.sendData(data, cb);
  }

  override _final(cb: (err?: Error | null) => void): void {
    if (this.conn.state === 'closed' && !this.sentDismiss) {
      cb(this.conn.closeError ?? new ConnectionClosedError());
      return;
    }
    this.sendDismiss();
    cb();
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this.conn.resumeReading(this);
    this.releaseBudget();
    // What the reader never took is dropped: with flow control its credit goes back to the writer (see receiveData).
    if (!this.finalized && this.unread > 0) this.flow?.discarded(this.unread);
    this.unread = 0;
    clearTimeout(this.graceTimer);
    // A write waiting for credit will never be sent now: its callback learns that at once.
    this.flow?.failPending(new StreamClosedError('stream destroyed'));
    // Aborting: tell the peer (it will answer; we keep the ID until then so its Dismiss is acknowledged).
    if (!this.finalized) {
      if (this.conn.state === 'closed') this.finalize(err ?? undefined);
      else this.sendDismiss();
    }
    cb(err);
  }

  private sendData(data: Buffer, cb: (err?: Error | null) => void): void {
    if (this.conn.state === 'closed') {
      cb(this.conn.closeError ?? new ConnectionClosedError());
      return;
    }
    if (this.sentDismiss || this.finalized) {
      cb(new StreamClosedError('write after the stream was dismissed'));
      return;
    }
    if (this.flow) {
      this.flow.send(data, (err) => {
        if (!err) return this.afterSend(cb);
        // Like failStream: a write the stream gave up on must not crash a process that only watches 'close'.
        if (this.listenerCount('error') === 0) this.once('error', () => {});
        cb(err);
      });
      return;
    }
    const max = this.conn.limits.maxStreamPayload;
    for (let off = 0; off < data.length || off === 0; off += max) {
      this.conn.sendStream(this.streamId, data.length <= max ? data : data.subarray(off, off + max));
      if (data.length <= max) break;
    }
    this.sent(data.length);
    this.afterSend(cb);
  }

  /** A write is complete once the socket does not ask us to wait. */
  private afterSend(cb: (err?: Error | null) => void): void {
    if (this.conn.needsDrain) this.conn.waitDrain(() => cb());
    else cb();
  }

  // ---- from the multiplexer ----

  /** @internal Raw bytes from the peer. A full buffer pauses the whole socket: there is no window on the wire. */
  receiveData(payload: Buffer): void {
    this.flow?.onData(payload.length);
    // After the peer's Dismiss too: a Go peer's data can follow it (see the top of this file).
    if (this.destroyed || this.readEnded || this.readableEnded) {
      // Dropped unread, as a closed socket drops it: give the credit back at once, so a writer waiting for it
      // finishes (and its Dismiss follows) instead of waiting out closeTimeout.
      if (!this.finalized) this.flow?.discarded(payload.length);
      return;
    }
    if (payload.length === 0) return;
    this.bytesIn += payload.length;
    if (this.#owner && channels.streamBytesIn.hasSubscribers) {
      channels.streamBytesIn.publish({ stream: this, bytes: payload.length });
    }
    this.unread += payload.length;
    // With the extension the windows bound what peers can make us hold; the connection budget (which pauses
    // the socket, stalling every stream) is only the fallback for peers without it.
    if (!this.flow && this.countsBudget) this.conn.addBuffered(payload.length);
    const before = this.readableLength;
    const taken = this.takenByRead;
    // Without the extension a full buffer pauses the whole socket; with it the window bounds the buffer.
    if (!this.push(payload) && !this.flow) this.conn.pauseReading(this);
    // A flowing stream with an empty buffer hands the chunk to 'data' listeners without buffering it (and
    // without read()): that is consumption too.
    const handedOver = before + payload.length - this.readableLength - (this.takenByRead - taken);
    if (handedOver > 0) this.consumed(handedOver);
  }

  /**
   * @internal The peer closes: acknowledge, answer with our own Dismiss, and end the readable side once nothing
   * more can come (at once for a geminio-node peer; see the top of this file for a Go peer).
   */
  receiveDismiss(id: bigint): void {
    this.conn.send(encodePacket({ type: T.DismissAck, id, sessionId: this.streamId, data: {} }));
    // A repeated Dismiss (or one after we gave up on the exchange) is acknowledged and otherwise ignored.
    if (!this.#transition('dismiss')) return;
    this.startCloseTimer();
    if (this.#state === 'finalized') {
      this.completed();
      return;
    }
    // Already aborted locally: our Dismiss went out in _destroy; its DismissAck finishes the exchange.
    if (this.destroyed) return;
    this.#onPeerDismiss?.();
    if (this.conn.peerOrdersDismiss) this.endReadable();
    if (!this.awaitingAccept) this.answerDismiss();
  }

  /** The peer dismissed: end our writable side too, unless half-open. */
  private answerDismiss(): void {
    // Our Dismiss went out already: the exchange finishes with the peer's DismissAck.
    if (this.writableEnded) return;
    if (this.allowHalfOpen) {
      // Half-open: we keep writing; with a Go peer the readable side ends after the grace at the latest.
      if (!this.conn.peerOrdersDismiss) {
        this.graceTimer = setTimeout(() => this.endReadable(), this.conn.limits.dismissGrace);
      }
      return;
    }
    // Answer with our own Dismiss (after what we already wrote), as Go does, rather than when the reader reaches
    // the end: a peer's close must not wait on a reader that never reads (Go would wait 30 s). A Go peer's last
    // writes may still be on their way to its socket behind the Dismiss, and Go drops them once the exchange is
    // over, so we answer it after dismissGrace; a geminio-node peer at once.
    if (this.conn.peerOrdersDismiss) this.endForPeer();
    else {
      this.graceTimer = setTimeout(() => {
        if (!this.writableEnded && !this.destroyed) this.endForPeer();
      }, this.conn.limits.dismissGrace);
    }
  }

  private endForPeer(): void {
    if (this.#onEndedByPeer) return this.#onEndedByPeer();
    this.endedByPeer = true;
    this.end();
  }

  /** @internal The multiplexer hands this accepted stream to the application, with its half-open choice. */
  handedOver(allowHalfOpen: boolean | undefined): void {
    if (allowHalfOpen !== undefined) this.allowHalfOpen = allowHalfOpen;
    if (!this.awaitingAccept) return;
    this.awaitingAccept = false;
    if (this.gotDismiss && !this.destroyed) this.answerDismiss();
  }

  /** Ends the readable side once: what the peer sends after this is dropped. */
  private endReadable(): void {
    if (this.readEnded) return;
    this.readEnded = true;
    clearTimeout(this.graceTimer);
    if (!this.destroyed) this.push(null);
  }

  /** @internal The peer acknowledged our Dismiss. One we never sent is a protocol error. */
  receiveDismissAck(): void {
    if (this.#state === 'finalized') return; // late, after we gave up on the exchange
    if (!this.#transition('ack')) {
      throw new ProtocolError(`stream ${this.streamId}: DismissAck in state ${this.#state}`);
    }
    if (this.finalized) this.completed();
  }

  /**
   * @internal The connection is gone. A stream the peer had dismissed, or that we had dismissed before a clean
   * close, ends cleanly; any other fails with the connection's error.
   */
  connectionClosed(err: GeminioError | undefined): void {
    if (this.finalized) return;
    const clean = this.destroyed || this.gotDismiss || (err === undefined && this.sentDismiss);
    this.finalize(
      clean
        ? undefined
        : (err ?? new ConnectionClosedError('connection closed before the stream was dismissed')),
    );
    if (this.destroyed) return;
    if (this.gotDismiss) {
      // The peer had said it was done: the readable side ends cleanly; later writes fail.
      this.endReadable();
      return;
    }
    if (err === undefined && this.sentDismiss) {
      this.push(null);
      this.destroy();
      return;
    }
    failStream(this, err ?? new ConnectionClosedError('connection closed before the stream was dismissed'));
  }

  /** @internal Sends our Dismiss once; the exchange must then finish within closeTimeout. */
  sendDismiss(): void {
    if (!this.#transition('send')) return;
    this.conn.send(
      encodePacket({ type: T.Dismiss, id: this.conn.ids.next(), sessionId: this.streamId, data: {} }),
    );
    this.startCloseTimer();
  }

  /** The exchange must be over within closeTimeout of the first Dismiss, whichever side sent it. */
  private startCloseTimer(): void {
    this.closeTimer ??= setTimeout(() => this.abandon(), this.conn.limits.closeTimeout);
  }

  /**
   * closeTimeout passed: forget the stream. A peer that dismissed it gets a clean end of the readable side; any
   * write still waiting, or a stream the peer never dismissed, fails with StreamClosedError.
   */
  private abandon(): void {
    if (this.finalized) return;
    const err = new StreamClosedError('peer did not complete the Dismiss exchange');
    this.flow?.failPending(err);
    this.finalize(this.gotDismiss && this.writableFinished ? undefined : err);
    if (this.destroyed) return;
    // What was read so far stays readable only when both sides were done; otherwise the stream fails.
    if (this.gotDismiss && this.writableFinished) this.endReadable();
    else failStream(this, err);
  }

  /** The exchange is complete: after this a Go peer sends nothing more on the stream. */
  private completed(): void {
    this.endReadable();
    this.afterFinalized(undefined);
  }

  /** Finalizes early (or after a complete exchange, a no-op for the state). */
  private finalize(error?: Error): void {
    if (this.finalized) return;
    this.#forceFinalized();
    this.afterFinalized(error);
  }

  /** `error`: why the stream ended early (undefined for a clean end; a local destroy's error is its own). */
  private afterFinalized(error: Error | undefined): void {
    if (this.#owner && channels.streamClose.hasSubscribers) {
      channels.streamClose.publish({
        stream: this,
        end: this.#owner,
        clientId: this.conn.clientId,
        streamId: this.streamId,
        bytesIn: this.bytesIn,
        bytesOut: this.bytesOut,
        error: error ?? this.errored ?? undefined,
      });
    }
    this.flow?.release();
    clearTimeout(this.closeTimer);
    clearTimeout(this.graceTimer);
    this.closeTimer = undefined;
    // What is still unread stays readable, but no longer holds the connection's budget (or pauses the socket).
    this.releaseBudget();
    this.conn.resumeReading(this);
    this.onFinalized(this);
  }

  private releaseBudget(): void {
    if (!this.flow && this.countsBudget) this.conn.releaseBuffered(this.unread);
    this.countsBudget = false;
  }
}

/**
 * Destroys a stream with an error, but emits 'error' only when someone listens for it (a pipeline, an async
 * iterator, an 'error' handler): losing a connection must not crash a process that only watches 'close'.
 * The error stays readable as `stream.errored` either way.
 */
/**
 * @internal Discards a write the peer can no longer take (it dismissed the stream): the callback, if any, gets
 * StreamClosedError on the next tick; no 'error' event. Shared by StreamCore and the End's relay.
 */
export function discardWrite(
  encoding: BufferEncoding | ((error: Error | null | undefined) => void) | undefined,
  cb: ((error: Error | null | undefined) => void) | undefined,
): false {
  const callback = typeof encoding === 'function' ? encoding : cb;
  if (callback)
    process.nextTick(callback, new StreamClosedError('write after the peer dismissed the stream'));
  return false;
}

export function failStream(stream: Duplex, err: GeminioError): void {
  if (stream.listenerCount('error') > 0) {
    stream.destroy(err);
    return;
  }
  stream.once('error', () => {});
  stream.destroy(err);
}

/** The error RPC and messaging on a destroyed stream fail with. */
export function toStreamError(err: Error): GeminioError {
  return err instanceof StreamClosedError || err instanceof ConnectionClosedError
    ? err
    : new StreamClosedError(err.message, { cause: err });
}
