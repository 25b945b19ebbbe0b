/**
 * The connection layer: one transport (TCP, TLS or any Duplex), its handshake, heartbeats, liveness and the
 * DisConn close exchange. It decodes frames, answers connection-level packets itself and hands every other packet
 * to `onPacket` (the multiplexer). It knows nothing of streams.
 */
import { EventEmitter } from 'node:events';
import type { Duplex } from 'node:stream';
import type { EndLimits } from '../config.js';
import { heartbeatCode } from '../config.js';
import { channels } from '../diag.js';
import {
  ConnectionClosedError,
  FrameTooLargeError,
  GeminioError,
  HandshakeRejectedError,
  HandshakeTimeoutError,
  HeartbeatTimeoutError,
  LimitExceededError,
  ProtocolError,
} from '../errors.js';
import {
  Capability,
  ConnFlag,
  HEARTBEAT_INTERVALS_MS,
  packetTypeName,
  RetCode,
  PacketType as T,
} from '../frame/constants.js';
import { FrameDecoder } from '../frame/decode.js';
import { encodePacket, encodeStreamHeader } from '../frame/encode.js';
import type { ConnData, ConnPacket, Packet } from '../frame/packet.js';
import { IdFactory } from '../ids.js';
import { Liveness } from './liveness.js';

export type Role = 'client' | 'server';
export type ConnectionState = 'handshaking' | 'open' | 'closing' | 'closed';

/**
 * Where a connection is, finer than its public state. The close exchange: each side sends DisConn once and
 * acknowledges the other's.
 *
 *   handshaking ──Conn (server)──▶ deciding ──onConnect──▶ open
 *        └──────ConnAck (client)─────────────────────────▶ open ──close() or peer's DisConn──▶ closing
 *   closing ──DisConnAck──▶ closingAcked ──peer's DisConn──▶ closed
 *   closing ──peer's DisConn──▶ closingPeerDone ──DisConnAck──▶ closed
 *   any ──destroy / transport lost──▶ closed ──transport closed──▶ gone ('close' emitted)
 *
 * A frame that means nothing in the current phase (a second Conn, a DisConnAck for a DisConn we never sent) is a
 * protocol error.
 */
export type ConnectionPhase =
  | 'handshaking'
  | 'deciding'
  | 'open'
  | 'closing'
  | 'closingAcked'
  | 'closingPeerDone'
  | 'closed'
  | 'gone';

const publicState: Record<ConnectionPhase, ConnectionState> = {
  handshaking: 'handshaking',
  deciding: 'handshaking',
  open: 'open',
  closing: 'closing',
  closingAcked: 'closing',
  closingPeerDone: 'closing',
  closed: 'closed',
  gone: 'closed',
};

/** What the server's connect hook sees. */
export interface ConnectInfo {
  /** The ClientID the client asked for (0 when none). Never trusted unless the hook returns it. */
  proposedClientId: bigint;
  /** True when the client asked the server to choose (the Go client always does). */
  clientIdAcquire: boolean;
  meta: Buffer;
  remoteAddress: string | undefined;
  /** The TLS peer certificate when the transport is TLS with client certificates. */
  peerCertificate: unknown;
  /** The resume secret a geminio-node client presents with its proposed ClientID after a reconnect. */
  resumeToken: Buffer | undefined;
  /**
   * Set by a Listener: the proposed ClientID is one it assigned and the client presented that ID's resume
   * secret, so it is this client's own. (Without a Listener, always false.)
   */
  resumeVerified: boolean;
  /** TLS transports: whether the peer's certificate was verified against the trusted CAs. */
  authorized: boolean | undefined;
}

/**
 * Decides a new connection: return a ClientID (or nothing to have one assigned), throw or reject to refuse it; the
 * error's message is sent to the client in the error ConnAck.
 */
export type ConnectHook = (
  info: ConnectInfo,
  // biome-ignore lint/suspicious/noConfusingVoidType: a hook that returns nothing means "assign a ClientID".
) => bigint | undefined | void | Promise<bigint | undefined | void>;

/** Process-wide, like Go's DefaultIncIDCounter: ClientIDs assigned by this process never repeat. */
const clientIds = new IdFactory();

/** A fresh ClientID from the process-wide counter (never 0). */
export function assignClientId(): bigint {
  return clientIds.next();
}

/** Bytes buffered by connections still in the handshake, shared by all the connections of one listener. */
export class HandshakeBudget {
  used = 0;
  constructor(readonly limit: number) {}
}

export interface ConnectionInit {
  role: Role;
  transport: Duplex;
  limits: EndLimits;
  /** Client: meta sent in Conn. */
  meta?: Buffer | undefined;
  /** Client: ClientID to propose (the server decides). */
  clientId?: bigint | undefined;
  /** Server: decides the ClientID or refuses. */
  onConnect?: ConnectHook | undefined;
  /** PacketID factory; a reconnecting End keeps one across connections so replayed IDs never collide. */
  ids?: IdFactory | undefined;
  /** Client: the resume secret a geminio-node server gave the previous connection. */
  resumeToken?: Buffer | undefined;
  /** Server: the resume secret to hand a geminio-node client that was given `clientId`. */
  resumeTokenFor?: ((clientId: bigint) => Buffer | undefined) | undefined;
  /** Server: the listener's budget for bytes buffered before handshakes complete. */
  handshakeBudget?: HandshakeBudget | undefined;
}

/**
 * Events: 'close' (error: GeminioError | undefined) once, when the transport is gone; `error` is undefined after a
 * clean DisConn exchange.
 */
export class Connection extends EventEmitter {
  readonly role: Role;
  readonly transport: Duplex;
  readonly limits: EndLimits;
  readonly ids: IdFactory;
  clientId = 0n;
  meta: Buffer;
  #phase: ConnectionPhase = 'handshaking';
  /** Why the connection closed; undefined while open or after a clean close. */
  closeError: GeminioError | undefined;
  /** geminio-node extensions both sides agreed on at the handshake (Capability bits); 0 with a Go peer. */
  capabilities = 0;
  /** Client: the resume secret the server gave (geminio-node servers only). */
  resumeToken: Buffer | undefined;
  /** Bytes held in stream read buffers, across streams (see maxBufferedBytes). */
  private bufferedBytes = 0;
  /** Sum of stream receive windows beyond the initial ones (see maxConnectionWindow). */
  private grownWindow = 0;
  /**
   * Every packet that is not connection-level. Until the upper layer attaches (see attach()), packets that
   * arrive right behind the ConnAck, in the same chunk, are held rather than lost.
   */
  private onPacket: (packet: Packet) => void = (p) => this.early.push(p);
  private early: Packet[] = [];
  /** Set by the multiplexer: called once when a graceful close starts (either side), before DisConn is sent. */
  onClosing: () => void = () => {};

  private readonly decoder: FrameDecoder;
  private readonly liveness: Liveness;
  private heartbeatTimer: NodeJS.Timeout | undefined;
  private handshakeTimer: NodeJS.Timeout | undefined;
  private closeTimer: NodeJS.Timeout | undefined;
  private handshake: { resolve: () => void; reject: (err: Error) => void; connId: bigint } | undefined;
  private corked = false;
  private readonly pausers = new Set<unknown>();
  private drainWaiters: Array<() => void> = [];
  private readonly proposedClientId: bigint;
  private readonly onConnectHook: ConnectHook | undefined;
  private readonly resumeTokenFor: ((clientId: bigint) => Buffer | undefined) | undefined;
  private readonly handshakeBudget: HandshakeBudget | undefined;
  /** Our share of handshakeBudget: what the decoder holds while the handshake runs. */
  private handshakeBytes = 0;

  constructor(init: ConnectionInit) {
    super();
    this.role = init.role;
    this.ids = init.ids ?? new IdFactory();
    this.transport = init.transport;
    this.limits = init.limits;
    this.meta = init.meta ?? Buffer.alloc(0);
    this.proposedClientId = init.clientId ?? 0n;
    this.onConnectHook = init.onConnect;
    this.resumeToken = init.resumeToken;
    this.resumeTokenFor = init.resumeTokenFor;
    this.handshakeBudget = init.handshakeBudget;
    // Until the handshake is done a peer may send only small frames (see maxHandshakePacketLength).
    this.decoder = new FrameDecoder({
      maxPacketLength: Math.min(init.limits.maxHandshakePacketLength, init.limits.maxPacketLength),
      streamParts: true,
    });
    this.liveness = new Liveness(() => this.destroy(new HeartbeatTimeoutError()));
    this.transport.on('data', (chunk: Buffer) => this.onData(chunk));
    this.transport.on('drain', () => this.onDrain());
    this.transport.on('error', (err: Error) =>
      this.destroy(new ConnectionClosedError(err.message, { cause: err })),
    );
    this.transport.on('close', () => this.onTransportClose());
    this.transport.on('end', () => {
      // The peer half-closed the socket: geminio has no use for half-open connections.
      if (this.state !== 'closed') this.transport.end();
    });
  }

  get state(): ConnectionState {
    return publicState[this.#phase];
  }

  /** Where the connection is, handshake and close exchange included. */
  get phase(): ConnectionPhase {
    return this.#phase;
  }

  /** Extensions this side offers (client) or accepts (server). */
  private get offeredCapabilities(): number {
    return Capability.RequestCancel | (this.limits.flowControl ? Capability.FlowControl : 0);
  }

  /** True when both sides run the flow-control extension. */
  get flowControl(): boolean {
    return (this.capabilities & Capability.FlowControl) !== 0;
  }

  /**
   * True when the peer is geminio-node (it agreed to an extension; every geminio-node End offers RequestCancel):
   * it sends a stream's Dismiss after the stream's data. A Go peer's Dismiss can overtake its last writes.
   */
  get peerOrdersDismiss(): boolean {
    return this.capabilities !== 0;
  }

  /** True when the peer understands RequestCancel (never true for a Go peer). */
  get canCancel(): boolean {
    return (this.capabilities & Capability.RequestCancel) !== 0;
  }

  /** A stream buffered `n` more bytes for its reader; past maxBufferedBytes the socket pauses. */
  addBuffered(n: number): void {
    this.bufferedBytes += n;
    if (this.bufferedBytes > this.limits.maxBufferedBytes) this.pauseReading(this);
  }

  /** A reader took `n` bytes (or a stream dropped them); below half the budget the socket resumes. */
  releaseBuffered(n: number): void {
    this.bufferedBytes -= n;
    if (this.bufferedBytes <= this.limits.maxBufferedBytes / 2) this.resumeReading(this);
  }

  /** Reserves `n` bytes of window growth from the connection budget; false when it is spent. */
  reserveWindow(n: number): boolean {
    if (this.grownWindow + n > this.limits.maxConnectionWindow) return false;
    this.grownWindow += n;
    return true;
  }

  releaseWindow(n: number): void {
    this.grownWindow -= n;
  }

  /** Connects the upper layer (the multiplexer) and hands it the packets that arrived before it. */
  attach(onPacket: (packet: Packet) => void): void {
    this.onPacket = onPacket;
    const early = this.early;
    this.early = [];
    try {
      for (const p of early) onPacket(p);
    } catch (err) {
      this.fail(err instanceof GeminioError ? err : new ProtocolError(String(err), { cause: err }));
    }
  }

  get remoteAddress(): string | undefined {
    return (this.transport as { remoteAddress?: string }).remoteAddress;
  }

  /** Runs the handshake; resolves when the connection is open, rejects with a typed error otherwise. */
  start(): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const connId = this.role === 'client' ? this.ids.next() : 0n;
      this.handshake = { resolve, reject, connId };
      this.handshakeTimer = setTimeout(
        () => this.destroy(new HandshakeTimeoutError()),
        this.limits.handshakeTimeout,
      );
      if (this.role === 'client') {
        const code = heartbeatCode(this.limits.heartbeatInterval);
        this.send(
          encodePacket({
            type: T.Conn,
            id: connId,
            flags: ConnFlag.ClientIdAcquire | (code << ConnFlag.HeartbeatShift),
            clientId: this.proposedClientId,
            capabilities: this.offeredCapabilities,
            data: { meta: this.meta, ext: this.resumeToken ? { resume: this.resumeToken } : undefined },
          }),
        );
      }
    });
  }

  // ---- writing ----

  /** Queues one encoded frame. Writes within one event-loop turn are corked together: one syscall for many streams. */
  send(frame: Buffer): boolean {
    if (this.state === 'closed') return false;
    this.cork();
    return this.transport.write(frame);
  }

  /** Queues one Stream packet without copying the payload. Returns false when the caller should wait for drain. */
  sendStream(sessionId: bigint, payload: Buffer): boolean {
    if (this.state === 'closed') return false;
    this.cork();
    this.transport.write(encodeStreamHeader(this.ids.next(), sessionId, payload.length));
    return this.transport.write(payload);
  }

  /** True when the transport's buffer is over its high-water mark. */
  get needsDrain(): boolean {
    return this.transport.writableNeedDrain;
  }

  /** Calls `cb` once the transport drains (or the connection closes). */
  waitDrain(cb: () => void): void {
    if (this.state === 'closed' || !this.transport.writableNeedDrain) {
      process.nextTick(cb);
      return;
    }
    this.drainWaiters.push(cb);
  }

  private cork(): void {
    if (this.corked) return;
    this.corked = true;
    this.transport.cork();
    setImmediate(uncork, this);
  }

  private onDrain(): void {
    const waiters = this.drainWaiters;
    this.drainWaiters = [];
    for (const cb of waiters) cb();
  }

  // ---- reading ----

  /** Stops reading the socket while any stream's buffer is full (there is no window on the wire). */
  pauseReading(by: unknown): void {
    this.pausers.add(by);
    this.transport.pause();
  }

  resumeReading(by: unknown): void {
    if (!this.pausers.delete(by)) return;
    if (this.pausers.size === 0 && this.state !== 'closed') this.transport.resume();
  }

  private onData(chunk: Buffer): void {
    if (this.state === 'closed') return;
    try {
      this.decoder.push(chunk, (p) => this.dispatch(p));
      if (this.state === 'handshaking' && this.handshakeBudget) this.chargeHandshake();
    } catch (err) {
      this.fail(err instanceof GeminioError ? err : new ProtocolError(String(err), { cause: err }));
    }
  }

  /** Before the handshake completes, what the decoder holds counts against the listener's budget. */
  private chargeHandshake(): void {
    const budget = this.handshakeBudget!;
    const now = this.decoder.bufferedBytes;
    budget.used += now - this.handshakeBytes;
    this.handshakeBytes = now;
    if (budget.used > budget.limit) {
      throw new LimitExceededError(
        `handshakeBufferBudget (${budget.limit} bytes) spent by connections still in the handshake`,
      );
    }
  }

  private releaseHandshake(): void {
    if (this.handshakeBudget) this.handshakeBudget.used -= this.handshakeBytes;
    this.handshakeBytes = 0;
  }

  private dispatch(p: Packet): void {
    if (this.state === 'closed') return;
    this.liveness.saw();
    switch (p.type) {
      case T.Conn:
        return this.onConn(p);
      case T.ConnAck:
        return this.onConnAck(p.retCode, p.clientId, p.data);
      case T.Heartbeat:
        if (this.state === 'handshaking') throw new ProtocolError('Heartbeat before the handshake completed');
        // Only clients send heartbeats; a client that receives one ignores it, as the Go client does.
        if (this.role === 'server') this.send(encodePacket({ type: T.HeartbeatAck, id: p.id }));
        return;
      case T.HeartbeatAck:
        return;
      case T.DisConn:
        return this.onDisConn(p.id);
      case T.DisConnAck:
        return this.onDisConnAck();
      default:
        if (this.state === 'handshaking') {
          throw new ProtocolError(`${packetTypeName[p.type]} before the handshake completed`);
        }
        this.onPacket(p);
    }
  }

  // ---- handshake ----

  private onConn(p: ConnPacket): void {
    if (this.role === 'client') throw new ProtocolError('a client received Conn');
    if (this.#phase !== 'handshaking' || !this.handshake) {
      throw new ProtocolError('second Conn on an established connection');
    }
    this.#phase = 'deciding';
    const code = (p.flags & ConnFlag.HeartbeatMask) >> ConnFlag.HeartbeatShift;
    this.meta = p.data.meta ?? Buffer.alloc(0);
    const info: ConnectInfo = {
      proposedClientId: p.clientId,
      clientIdAcquire: (p.flags & ConnFlag.ClientIdAcquire) !== 0,
      meta: this.meta,
      remoteAddress: this.remoteAddress,
      peerCertificate: peerCertificate(this.transport),
      resumeToken: p.data.ext?.resume,
      resumeVerified: false,
      authorized: (this.transport as { authorized?: boolean }).authorized,
    };
    const timeout = this.limits.heartbeatTimeout ?? 2 * HEARTBEAT_INTERVALS_MS[code]!;
    Promise.resolve()
      .then(() => this.onConnectHook?.(info))
      .then(
        (decided) => {
          if (this.state !== 'handshaking') return;
          this.clientId = typeof decided === 'bigint' && decided !== 0n ? decided : clientIds.next();
          // Answer the extension only when asked: a Go client never asks, so it sees Go's exact ConnAck.
          this.capabilities = (p.capabilities ?? 0) & this.offeredCapabilities;
          const resume = this.capabilities ? this.resumeTokenFor?.(this.clientId) : undefined;
          const data: ConnData = this.capabilities ? { ext: { caps: this.capabilities, resume } } : {};
          this.send(
            encodePacket({ type: T.ConnAck, id: p.id, retCode: RetCode.OK, clientId: this.clientId, data }),
          );
          this.opened(timeout);
        },
        (err: unknown) => {
          if (this.state !== 'handshaking') return;
          const reason = err instanceof Error ? err.message : String(err);
          this.send(
            encodePacket({
              type: T.ConnAck,
              id: p.id,
              retCode: RetCode.ERR,
              clientId: p.clientId,
              data: { error: reason || 'rejected' },
            }),
          );
          // Like Go: an error ConnAck is followed by DisConn, then the socket closes.
          this.send(encodePacket({ type: T.DisConn, id: this.ids.next() }));
          this.destroy(new HandshakeRejectedError(reason || 'rejected', { cause: err }), true);
        },
      );
  }

  private onConnAck(retCode: number, clientId: bigint, data: ConnData): void {
    const error = data.error;
    if (this.role === 'server' || this.state !== 'handshaking') {
      throw new ProtocolError('unexpected ConnAck');
    }
    // The Go client looks only at the error string; we also honour RetCode.
    if (error || retCode !== RetCode.OK) {
      this.destroy(new HandshakeRejectedError(error || `ConnAck return code ${retCode}`));
      return;
    }
    if (clientId === 0n) throw new ProtocolError('server assigned ClientID 0');
    this.clientId = clientId;
    this.capabilities = (data.ext?.caps ?? 0) & this.offeredCapabilities;
    this.resumeToken = data.ext?.resume ?? this.resumeToken;
    this.opened(this.limits.heartbeatTimeout ?? 2 * this.limits.heartbeatInterval);
    this.heartbeatTimer = setInterval(sendHeartbeat, this.limits.heartbeatInterval, this);
  }

  private opened(livenessTimeout: number): void {
    clearTimeout(this.handshakeTimer);
    this.#phase = 'open';
    this.releaseHandshake();
    this.decoder.maxPacketLength = this.limits.maxPacketLength;
    this.liveness.start(livenessTimeout);
    const hs = this.handshake;
    this.handshake = undefined;
    hs?.resolve();
  }

  // ---- closing ----

  /**
   * Graceful close: DisConn, then wait for the peer's DisConnAck and DisConn (up to closeTimeout), then end the
   * socket. Resolves when the transport is closed. Idempotent.
   */
  close(): Promise<void> {
    const done = new Promise<void>((resolve) => {
      if (this.#phase === 'gone') resolve();
      else this.once('close', () => resolve());
    });
    if (this.state === 'handshaking') this.destroy(new ConnectionClosedError('closed during handshake'));
    else if (this.state === 'open') this.beginClose();
    return done;
  }

  /** open → closing: our DisConn goes out; the exchange must be over within closeTimeout. */
  private beginClose(): void {
    this.#phase = 'closing';
    this.onClosing();
    this.send(encodePacket({ type: T.DisConn, id: this.ids.next() }));
    this.closeTimer ??= setTimeout(
      () => this.destroy(new ConnectionClosedError('peer did not complete the close exchange')),
      this.limits.closeTimeout,
    );
  }

  private onDisConn(id: bigint): void {
    if (this.state === 'handshaking') throw new ProtocolError('DisConn before the handshake completed');
    // DisConnAck first: the peer may be waiting for it alone (simultaneous close works too).
    this.send(encodePacket({ type: T.DisConnAck, id, retCode: RetCode.OK, data: {} }));
    switch (this.#phase) {
      case 'open':
        this.beginClose();
        this.#phase = 'closingPeerDone';
        return;
      case 'closing':
        this.#phase = 'closingPeerDone';
        return;
      case 'closingAcked':
        return this.finishClose();
      default:
        return; // a repeated DisConn: acknowledged again
    }
  }

  private onDisConnAck(): void {
    switch (this.#phase) {
      case 'closing':
        this.#phase = 'closingAcked';
        return;
      case 'closingPeerDone':
        return this.finishClose();
      default:
        throw new ProtocolError(`DisConnAck in phase ${this.#phase}`);
    }
  }

  /** The close exchange is complete. */
  private finishClose(): void {
    this.#phase = 'closed';
    this.stopTimers();
    this.endTransport();
  }

  /** A malformed packet: tell a Go peer to close (DisConn), then drop the socket. */
  private fail(err: GeminioError): void {
    if (this.state === 'closed') return;
    // Our DisConn is already out once the close exchange has begun.
    if (this.#phase === 'open') {
      this.send(encodePacket({ type: T.DisConn, id: this.ids.next() }));
    }
    this.destroy(err, true);
  }

  /** Closes now. `flush` ends the socket after what is queued (used after a last DisConn) instead of resetting. */
  destroy(err?: GeminioError, flush = false): void {
    if (this.state === 'closed') {
      if (!flush) this.transport.destroy();
      return;
    }
    this.#phase = 'closed';
    this.closeError = err ?? new ConnectionClosedError();
    this.stopTimers();
    this.releaseHandshake();
    const hs = this.handshake;
    this.handshake = undefined;
    if (hs) this.handshakeFailed(hs, this.closeError);
    if (flush) {
      this.endTransport();
    } else {
      this.transport.destroy();
    }
    this.onDrain();
  }

  /**
   * Flushes and ends the transport on the next tick: we may be inside the transport's own write call (a
   * synchronous in-memory Duplex), where a nested end() never finishes. A peer that never closes its side must
   * not hold the socket: it is dropped after closeTimeout.
   */
  private endTransport(): void {
    this.uncorkNow();
    process.nextTick(() => this.transport.end());
    this.closeTimer = setTimeout(() => this.transport.destroy(), this.limits.closeTimeout);
  }

  private onTransportClose(): void {
    if (this.state !== 'closed') {
      this.#phase = 'closed';
      this.closeError = new ConnectionClosedError('connection lost');
      this.stopTimers();
      this.releaseHandshake();
      const hs = this.handshake;
      this.handshake = undefined;
      if (hs) this.handshakeFailed(hs, this.closeError);
    }
    clearTimeout(this.closeTimer);
    this.onDrain();
    if (this.#phase === 'gone') return;
    this.#phase = 'gone';
    this.emit('close', this.closeError);
  }

  /** The handshake will not complete: its promise rejects, and observers hear why. */
  private handshakeFailed(hs: { reject: (err: Error) => void }, err: GeminioError): void {
    if (channels.handshakeError.hasSubscribers) {
      channels.handshakeError.publish({
        role: this.role,
        remoteAddress: this.remoteAddress,
        reason: handshakeFailure(err),
        error: err,
      });
    }
    hs.reject(err);
  }

  private stopTimers(): void {
    clearTimeout(this.handshakeTimer);
    clearInterval(this.heartbeatTimer);
    clearTimeout(this.closeTimer);
    this.liveness.stop();
  }

  /** @internal Flushes corked writes (from setImmediate, once per event-loop turn that wrote). */
  uncorkNow(): void {
    if (!this.corked) return;
    this.corked = false;
    this.transport.uncork();
  }
}

/** Why a handshake failed, for the diagnostics channel (see HandshakeFailure in sdk/diagnostics.ts). */
function handshakeFailure(err: GeminioError): string {
  if (err instanceof HandshakeTimeoutError) return 'timeout';
  if (err instanceof HandshakeRejectedError) return 'rejected';
  if (err instanceof LimitExceededError || err instanceof FrameTooLargeError) return 'limit';
  if (err instanceof ProtocolError) return 'protocol';
  return 'closed';
}

function uncork(conn: Connection): void {
  conn.uncorkNow();
}

function sendHeartbeat(conn: Connection): void {
  if (conn.state === 'open') conn.send(encodePacket({ type: T.Heartbeat, id: conn.ids.next() }));
}

function peerCertificate(transport: Duplex): unknown {
  const t = transport as { getPeerCertificate?: (detailed?: boolean) => unknown };
  if (typeof t.getPeerCertificate !== 'function') return undefined;
  const cert = t.getPeerCertificate(true) as Record<string, unknown> | null;
  return cert && Object.keys(cert).length > 0 ? cert : undefined;
}
