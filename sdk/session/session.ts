/**
 * The session: one connection's streams. It opens, accepts and forgets them, and routes every packet the
 * connection hands it: stream bytes and the Dismiss exchange to the stream core, RPC and message packets to the
 * stream's channel.
 *
 * Stream IDs follow the Go rules: the server chooses every ID. A client opens with sessionIDAcquire and adopts the
 * ID in the SessionAck; a server opens with its chosen ID as negotiateID. A new stream is entered in the table when
 * its ID is known (on SessionAck for the opener), so no early packet is lost, and data waits for the SessionAck.
 */

import type { Channel } from '../channel/channel.js';
import { Stream } from '../channel/stream.js';
import type { Connection } from '../connection/connection.js';
import { channels } from '../diag.js';
import {
  abortError,
  ConnectionClosedError,
  type GeminioError,
  LimitExceededError,
  ProtocolError,
  StreamOpenTimeoutError,
  StreamRefusedError,
} from '../errors.js';
import { DEFAULT_STREAM_ID, SessionFlag, PacketType as T } from '../frame/constants.js';
import { encodePacket } from '../frame/encode.js';
import type { Packet, SessionAckPacket, SessionPacket } from '../frame/packet.js';
import { guard } from '../util.js';

export interface OpenStreamOptions {
  /** Meta the peer sees as `stream.meta`. */
  meta?: string | Uint8Array | undefined;
  /** Free-form peer string (Go's OpenStreamOptions.SetPeer). */
  peer?: string | undefined;
  /** Default false: see Stream for what half-open means on a protocol without half-close. */
  allowHalfOpen?: boolean | undefined;
  /** Aborts the open. */
  signal?: AbortSignal | undefined;
}

/** Whether accepted streams are half-open: for all, or decided per stream from its meta. */
export type AcceptHalfOpen = boolean | ((meta: Buffer) => boolean);

export interface AcceptStreamOptions {
  /**
   * allowHalfOpen for this stream, set before the application's first look at it and applied to a Dismiss that
   * arrived while it waited in the accept backlog. Default: the End's acceptHalfOpen.
   */
  allowHalfOpen?: boolean | undefined;
}

interface PendingOpen {
  packetId: bigint;
  meta: Buffer;
  peer: string | undefined;
  allowHalfOpen: boolean;
  resolve: (s: Stream) => void;
  reject: (e: Error) => void;
  /** Clears the open's timer and abort listener. */
  release: () => void;
}

export class Session {
  /** Established streams (and aborted ones until their Dismiss exchange ends), by stream ID. */
  readonly streams = new Map<bigint, Stream>();
  private readonly opening = new Map<bigint, PendingOpen>();
  private readonly backlog: Stream[] = [];
  private acceptWaiters: Array<{
    resolve: (s: Stream) => void;
    reject: (e: Error) => void;
    allowHalfOpen: boolean | undefined;
  }> = [];
  private closingError: GeminioError | undefined;
  /** Packets dropped because they named no known stream (the Go library drops them too). */
  unknownStreamPackets = 0;

  constructor(
    readonly conn: Connection,
    private readonly acceptHalfOpen: AcceptHalfOpen = false,
    /** The End the session's streams are reported under on the diagnostics channels. */
    private readonly owner?: object,
  ) {}

  /**
   * Makes this connection's default stream (ID 1) for the End: its RPC and messaging are the End's channel, which
   * outlives the connection.
   */
  openDefault(init: { channel: Channel; onPeerDismiss: () => void; onEndedByPeer: () => void }): Stream {
    const stream = new Stream({
      conn: this.conn,
      streamId: DEFAULT_STREAM_ID,
      meta: this.conn.meta,
      peer: undefined,
      onFinalized: () => {},
      ...init,
    });
    this.streams.set(DEFAULT_STREAM_ID, stream);
    return stream;
  }

  /** Number of open streams, the default stream excluded. */
  get openCount(): number {
    return this.streams.size - (this.streams.has(DEFAULT_STREAM_ID) ? 1 : 0);
  }

  open(meta: Buffer, options: OpenStreamOptions): Promise<Stream> {
    if (this.closingError) return Promise.reject(this.closingError);
    if (this.openCount + this.opening.size >= this.conn.limits.maxStreams) {
      return Promise.reject(new LimitExceededError(`maxStreams (${this.conn.limits.maxStreams}) reached`));
    }
    const negotiateId = this.conn.ids.next();
    const packetId = this.conn.ids.next();
    const peer = options.peer;
    return new Promise<Stream>((resolve, reject) => {
      const signal = options.signal;
      if (signal?.aborted) return reject(abortError(signal.reason));
      const fail = (err: Error) => {
        const pending = this.opening.get(negotiateId);
        if (!pending) return;
        this.opening.delete(negotiateId);
        pending.release();
        reject(err);
      };
      // One timer and one abort listener, removed on every way out (ack, refusal, timeout, abort, close).
      const release = guard(
        this.conn.limits.streamOpenTimeout,
        signal,
        () => fail(new StreamOpenTimeoutError()),
        (reason) => fail(abortError(reason)),
      );
      this.opening.set(negotiateId, {
        packetId,
        meta,
        peer,
        allowHalfOpen: options.allowHalfOpen ?? false,
        resolve,
        reject,
        release,
      });
      // A client asks the server to choose the ID; a server proposes its own (the client takes it as is).
      const flags = this.conn.role === 'client' ? SessionFlag.SessionIdAcquire : 0;
      this.conn.send(
        encodePacket({
          type: T.Session,
          id: packetId,
          priority: 0,
          flags,
          negotiateId,
          data: { meta, peer },
        }),
      );
    });
  }

  accept(options: AcceptStreamOptions = {}): Promise<Stream> {
    const ready = this.backlog.shift();
    if (ready) {
      ready.handedOver(options.allowHalfOpen);
      return Promise.resolve(ready);
    }
    if (this.closingError) return Promise.reject(this.closingError);
    return new Promise((resolve, reject) =>
      this.acceptWaiters.push({ resolve, reject, allowHalfOpen: options.allowHalfOpen }),
    );
  }

  /** Routes one packet from the connection. */
  handlePacket(p: Packet): void {
    switch (p.type) {
      case T.Session:
        return this.onSession(p);
      case T.SessionAck:
        return this.onSessionAck(p);
      default:
        break;
    }
    if (!('sessionId' in p)) throw new ProtocolError(`unexpected packet type ${p.type} after the handshake`);
    const stream = this.streams.get(p.sessionId);
    if (!stream) {
      this.unknownStreamPackets++;
      // Acknowledge a Dismiss for a stream we no longer know, so the peer's close does not wait for its timeout.
      if (p.type === T.Dismiss) {
        this.conn.send(encodePacket({ type: T.DismissAck, id: p.id, sessionId: p.sessionId, data: {} }));
      }
      return;
    }
    switch (p.type) {
      case T.Stream:
        return stream.receiveData(p.payload);
      case T.Dismiss:
        return stream.receiveDismiss(p.id);
      case T.DismissAck:
        return stream.receiveDismissAck();
      case T.WindowUpdate:
        return stream.receiveWindowUpdate(p.increment);
      default:
        if (!stream.destroyed) stream.channel.handlePacket(p);
    }
  }

  private onSession(p: SessionPacket): void {
    const meta = p.data.meta ?? Buffer.alloc(0);
    let streamId: bigint;
    if (this.conn.role === 'server' || (p.flags & SessionFlag.SessionIdAcquire) !== 0)
      streamId = this.conn.ids.next();
    else streamId = p.negotiateId;
    let refusal: string | undefined;
    if (this.closingError) refusal = 'end is closing';
    else if (streamId === 0n || streamId === DEFAULT_STREAM_ID || this.streams.has(streamId)) {
      refusal = `stream id ${streamId} is in use`;
    } else if (this.openCount >= this.conn.limits.maxStreams) refusal = 'too many streams';
    else if (this.backlog.length >= this.conn.limits.acceptBacklog) refusal = 'accept backlog full';

    if (refusal !== undefined) {
      const collides = this.streams.has(streamId) || streamId <= DEFAULT_STREAM_ID;
      // A Go opener ignores the error and believes the stream open, so, like Go, follow with a Dismiss (unless
      // the ID names a live stream of ours, which a Dismiss would close).
      this.sendSessionAck(p, streamId, { error: refusal });
      if (!collides) this.track(this.create(streamId, meta, p.data.peer, false)).destroy();
      return;
    }
    const halfOpen =
      typeof this.acceptHalfOpen === 'function' ? this.acceptHalfOpen(meta) : this.acceptHalfOpen;
    const stream = this.track(this.create(streamId, meta, p.data.peer, halfOpen, this.owner));
    this.sendSessionAck(p, streamId, {});
    stream.opened();
    this.reportOpen(stream, 'remote');
    const waiter = this.acceptWaiters.shift();
    if (waiter) {
      stream.handedOver(waiter.allowHalfOpen);
      waiter.resolve(stream);
    } else {
      stream.awaitingAccept = true;
      this.backlog.push(stream);
    }
  }

  private onSessionAck(p: SessionAckPacket): void {
    const pending = this.opening.get(p.negotiateId);
    if (!pending) {
      // A late ack for an open that timed out or was aborted: close the stream the peer made for it.
      if (!p.data.error && p.sessionId > DEFAULT_STREAM_ID && !this.streams.has(p.sessionId)) {
        this.track(this.create(p.sessionId, Buffer.alloc(0), undefined, false)).destroy();
      }
      return;
    }
    this.opening.delete(p.negotiateId);
    pending.release();
    if (p.data.error) {
      pending.reject(new StreamRefusedError(p.data.error));
      return;
    }
    if (p.sessionId <= DEFAULT_STREAM_ID || this.streams.has(p.sessionId)) {
      pending.reject(new ProtocolError(`peer assigned stream id ${p.sessionId}, which is in use`));
      throw new ProtocolError(`peer assigned stream id ${p.sessionId}, which is in use`);
    }
    const stream = this.track(
      this.create(p.sessionId, pending.meta, pending.peer, pending.allowHalfOpen, this.owner),
    );
    stream.opened();
    this.reportOpen(stream, 'local');
    pending.resolve(stream);
  }

  private reportOpen(stream: Stream, origin: 'local' | 'remote'): void {
    if (!this.owner || !channels.streamOpen.hasSubscribers) return;
    channels.streamOpen.publish({
      stream,
      end: this.owner,
      clientId: this.conn.clientId,
      streamId: stream.streamId,
      origin,
    });
  }

  /** `owner` set: the stream is reported on the diagnostics channels (refused and stray ones are not). */
  /** Answers a peer's Session: `{}` accepts the stream, `{ error }` refuses it. */
  private sendSessionAck(p: SessionPacket, streamId: bigint, data: { error?: string }): void {
    this.conn.send(
      encodePacket({ type: T.SessionAck, id: p.id, negotiateId: p.negotiateId, sessionId: streamId, data }),
    );
  }

  private create(
    streamId: bigint,
    meta: Buffer,
    peer: string | undefined,
    allowHalfOpen: boolean,
    owner?: object,
  ): Stream {
    return new Stream({
      conn: this.conn,
      streamId,
      meta,
      peer,
      allowHalfOpen,
      owner,
      onFinalized: (s) => {
        if (this.streams.get(s.streamId) === s) this.streams.delete(s.streamId);
      },
    });
  }

  private track(stream: Stream): Stream {
    this.streams.set(stream.streamId, stream);
    return stream;
  }

  /** No new streams from now on (a graceful close has begun). */
  stopAccepting(err: GeminioError): void {
    if (this.closingError) return;
    this.closingError = err;
    for (const [id, pending] of this.opening) {
      this.opening.delete(id);
      pending.release();
      pending.reject(err);
    }
    const waiters = this.acceptWaiters;
    this.acceptWaiters = [];
    for (const w of waiters) w.reject(err);
  }

  /** The connection is gone: fail pending work, end or fail every stream. */
  connectionClosed(err: GeminioError | undefined): void {
    this.stopAccepting(err ?? new ConnectionClosedError());
    for (const s of this.backlog.splice(0)) s.connectionClosed(err);
    for (const s of [...this.streams.values()]) s.connectionClosed(err);
    this.streams.clear();
  }
}
