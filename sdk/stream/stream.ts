/**
 * One multiplexed stream as a Node Duplex. It never touches the socket: it sends frames through its Connection
 * and receives packets from the Multiplexer.
 *
 * Closing is the 4-way Dismiss exchange: each side sends Dismiss once and acknowledges the other's. `end()` flushes
 * what was written, then sends Dismiss; the readable side ends when the peer's Dismiss arrives, after everything the
 * peer sent before it. There is no half-close on the wire: with the default `allowHalfOpen: false` a stream whose
 * peer dismissed it flushes what was already written and answers with its own Dismiss at once, as Go does. With
 * `allowHalfOpen: true` it keeps its writable side until the application calls `end()` (a Go closer waits up to
 * 30 s for that; a geminio-node closer waits closeTimeout).
 */
import { Duplex } from 'node:stream';
import { StreamApplication } from '../application/application.js';
import type { StreamPort } from '../application/port.js';
import type { Connection } from '../connection/connection.js';
import { ConnectionClosedError, type GeminioError, ProtocolError, StreamClosedError } from '../errors.js';
import { PacketType as T } from '../frame/constants.js';
import { encodePacket } from '../frame/encode.js';
import type { Message, PublishOptions } from '../messaging/messaging.js';
import type { CallOptions, CallResult, RpcHandler } from '../rpc/rpc.js';
import { StreamFlow } from './flow.js';

export interface StreamInit {
  conn: Connection;
  streamId: bigint;
  meta: Buffer;
  peer: string | undefined;
  /** Called once when the Dismiss exchange is complete (or abandoned) and the ID can be forgotten. */
  onFinalized: (stream: Stream) => void;
  allowHalfOpen?: boolean;
}

export class Stream extends Duplex {
  /** The ID both sides use for this stream; 1 for the End's default stream. */
  readonly streamId: bigint;
  /** Meta given by the opener. */
  readonly meta: Buffer;
  /** Free-form peer string given by the opener (Go's OpenStreamOptions.SetPeer). */
  readonly peer: string | undefined;

  /** @internal The End swaps it after a reconnect. */ conn: Connection;
  private application: StreamApplication | undefined;
  private readonly onFinalized: (stream: Stream) => void;
  protected sentDismiss = false;
  protected gotDismissAck = false;
  protected gotDismiss = false;
  protected finalized = false;
  private closeTimer: NodeJS.Timeout | undefined;
  /** Per-stream windows when the extension was negotiated; undefined with a Go peer. */
  protected flow: StreamFlow | undefined;
  /** Bytes pushed to the readable buffer and not yet read (counted against the connection's budget). */
  private unread = 0;
  /** Running total of bytes read() took out of the buffer (to tell them from chunks handed straight over). */
  private takenByRead = 0;

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
    this.flow = init.conn.flowControl ? new StreamFlow(init.conn, init.streamId) : undefined;
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
      this.conn.releaseBuffered(n);
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

  /**
   * @internal RPC and messaging state, made on first use: most streams carry only bytes, and an idle stream
   * should cost little more than its Duplex.
   */
  get app(): StreamApplication {
    this.application ??= new StreamApplication(streamPort(this));
    return this.application;
  }

  // ---- RPC and messaging on this stream ----

  /** Serves `method` on this stream and announces it to the peer; resolves when the peer acknowledges. */
  register(
    method: string,
    handler: RpcHandler,
    options?: { timeout?: number; signal?: AbortSignal },
  ): Promise<void> {
    return this.app.rpc.register(method, handler, options);
  }

  /** Calls a method the peer registered on this stream. */
  call(method: string, data?: string | Uint8Array, options?: CallOptions): Promise<CallResult> {
    return this.app.rpc.call(method, data, options);
  }

  /** Methods the peer has registered on this stream. */
  get remoteMethods(): ReadonlySet<string> {
    return this.app.rpc.remoteMethods;
  }

  /** Resolves once the peer has registered all of `methods` on this stream (bounded by `timeout`). */
  waitRemoteMethods(
    methods: string[],
    options: { timeout?: number; signal?: AbortSignal } = {},
  ): Promise<void> {
    return this.app.rpc.waitRemote(
      methods,
      options.timeout ?? this.conn.limits.registerTimeout,
      options.signal,
    );
  }

  /** Publishes a message; resolves when the receiver acknowledges it (unless `delivery: 'at-most-once'`). */
  publish(data: string | Uint8Array, options?: PublishOptions): Promise<void> {
    return this.app.messaging.publish(data, options);
  }

  /** Resolves with the next message received on this stream. */
  receive(options?: { signal?: AbortSignal }): Promise<Message> {
    return this.app.messaging.receive(options);
  }

  /** Iterates the messages received on this stream until it closes. */
  messages(): AsyncGenerator<Message> {
    return this.app.messaging.messages();
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
    if (!this.flow) this.conn.releaseBuffered(this.unread);
    this.unread = 0;
    // Aborting: tell the peer (it will answer; we keep the ID until then so its Dismiss is acknowledged).
    if (!this.finalized) {
      if (this.conn.state === 'closed') this.finalize();
      else this.sendDismiss();
    }
    // Only a stream that used RPC or messaging has anything to fail (and an Error's stack is not free).
    this.application?.close(err ? toStreamError(err) : new StreamClosedError());
    cb(err);
  }

  protected sendData(data: Buffer, cb: (err?: Error | null) => void): void {
    if (this.conn.state === 'closed') {
      cb(this.conn.closeError ?? new ConnectionClosedError());
      return;
    }
    if (this.sentDismiss) {
      cb(new StreamClosedError('write after the stream was dismissed'));
      return;
    }
    if (this.flow) {
      this.flow.send(data, () => this.afterSend(cb));
      return;
    }
    const max = this.conn.limits.maxStreamPayload;
    for (let off = 0; off < data.length || off === 0; off += max) {
      this.conn.sendStream(this.streamId, data.length <= max ? data : data.subarray(off, off + max));
      if (data.length <= max) break;
    }
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
    if (this.destroyed || this.readableEnded || this.gotDismiss) return;
    if (payload.length === 0) return;
    this.unread += payload.length;
    // With the extension the windows bound what peers can make us hold; the connection budget (which pauses
    // the socket, stalling every stream) is only the fallback for peers without it.
    if (!this.flow) this.conn.addBuffered(payload.length);
    const before = this.readableLength;
    const taken = this.takenByRead;
    // Without the extension a full buffer pauses the whole socket; with it the window bounds the buffer.
    if (!this.push(payload) && !this.flow) this.conn.pauseReading(this);
    // A flowing stream with an empty buffer hands the chunk to 'data' listeners without buffering it (and
    // without read()): that is consumption too.
    const handedOver = before + payload.length - this.readableLength - (this.takenByRead - taken);
    if (handedOver > 0) this.consumed(handedOver);
  }

  /** @internal The peer closes: acknowledge, end the readable side, and answer with our own Dismiss. */
  receiveDismiss(id: bigint): void {
    this.conn.send(encodePacket({ type: T.DismissAck, id, sessionId: this.streamId, data: {} }));
    if (this.gotDismiss) return;
    this.gotDismiss = true;
    if (this.destroyed) {
      // Already aborted locally: our Dismiss went out in _destroy.
      this.maybeFinalize();
      return;
    }
    this.push(null);
    // Answer with our own Dismiss now (after what we already wrote), as Go does, rather than when the reader
    // reaches the end: a peer's close must not wait on a reader that never reads (Go would wait 30 s).
    if (!this.allowHalfOpen && !this.writableEnded) this.end();
    this.maybeFinalize();
  }

  /** @internal */
  receiveDismissAck(): void {
    this.gotDismissAck = true;
    this.maybeFinalize();
  }

  /**
   * @internal The connection is gone. A stream the peer had dismissed, or that we had dismissed before a clean
   * close, ends cleanly; any other fails with the connection's error.
   */
  connectionClosed(err: GeminioError | undefined): void {
    if (this.finalized) return;
    this.finalize();
    if (this.destroyed || this.gotDismiss) return; // readable already ended; later writes fail
    if (err === undefined && this.sentDismiss) {
      this.push(null);
      this.destroy();
      return;
    }
    failStream(this, err ?? new ConnectionClosedError('connection closed before the stream was dismissed'));
  }

  /** @internal Sends our Dismiss once; the exchange must then finish within closeTimeout. */
  sendDismiss(): void {
    if (this.sentDismiss || this.finalized) return;
    this.sentDismiss = true;
    this.conn.send(
      encodePacket({ type: T.Dismiss, id: this.conn.ids.next(), sessionId: this.streamId, data: {} }),
    );
    this.closeTimer = setTimeout(() => this.abandon(), this.conn.limits.closeTimeout);
    this.maybeFinalize();
  }

  private abandon(): void {
    if (this.finalized) return;
    this.finalize();
    if (!this.destroyed && !this.readableEnded) {
      failStream(this, new StreamClosedError('peer did not complete the Dismiss exchange'));
    }
  }

  private maybeFinalize(): void {
    if (this.sentDismiss && this.gotDismissAck && this.gotDismiss) this.finalize();
  }

  private finalize(): void {
    if (this.finalized) return;
    this.finalized = true;
    this.flow?.release();
    clearTimeout(this.closeTimer);
    this.conn.resumeReading(this);
    this.onFinalized(this);
  }
}

/** The stream's view for RPC and messaging; it reads `stream.conn` on each use, so it follows a reconnect. */
function streamPort(stream: Stream): StreamPort {
  return {
    streamId: stream.streamId,
    get clientId() {
      return stream.conn.clientId;
    },
    get limits() {
      return stream.conn.limits;
    },
    get canCancel() {
      return stream.conn.canCancel;
    },
    send: (frame) => stream.conn.send(frame),
    nextId: () => stream.conn.ids.next(),
    pauseReading: (by) => stream.conn.pauseReading(by),
    resumeReading: (by) => stream.conn.resumeReading(by),
  };
}

/**
 * Destroys a stream with an error, but emits 'error' only when someone listens for it (a pipeline, an async
 * iterator, an 'error' handler): losing a connection must not crash a process that only watches 'close'.
 * The error stays readable as `stream.errored` either way.
 */
export function failStream(stream: Stream, err: GeminioError): void {
  if (stream.listenerCount('error') > 0) {
    stream.destroy(err);
    return;
  }
  stream.once('error', () => {});
  stream.destroy(err);
}

function toStreamError(err: Error): GeminioError {
  return err instanceof StreamClosedError || err instanceof ConnectionClosedError
    ? err
    : new StreamClosedError(err.message, { cause: err });
}
