/**
 * An End is one side of a geminio connection: a facade over the current Session (one per connection; a reconnecting
 * client End swaps it). As a Duplex it carries the default stream's bytes (ID 1, a Stream of the current session),
 * across reconnects; it registers and calls methods, publishes and receives messages on its channel, which outlives
 * the connections. It opens and accepts the other streams, and it is their listener:
 * `for await (const s of end.streams())`.
 *
 * A client End made with `reconnect` outlives its connections: when one drops, the End redials with backoff,
 * asks for its previous ClientID, registers its methods again and sends again the messages not yet acknowledged.
 */

import { AsyncLocalStorage } from 'node:async_hooks';
import { Duplex } from 'node:stream';
import { Channel } from './channel/channel.js';
import type { DeliveryWindow } from './channel/delivery-window.js';
import type { Message, PublishOptions } from './channel/messaging.js';
import type { StreamPort } from './channel/port.js';
import type { CallOptions, CallResult, RpcHandler } from './channel/rpc.js';
import type { Stream } from './channel/stream.js';
import { toBuffer } from './config.js';
import type { Connection } from './connection/connection.js';
import { channels } from './diag.js';
import type {
  ConnectionCloseMessage,
  ConnectionOpenMessage,
  EndReconnectingMessage,
  EndReconnectMessage,
} from './diagnostics.js';
import {
  abortError,
  ConnectionClosedError,
  type GeminioError,
  StreamClosedError,
  TimeoutError,
} from './errors.js';
import { DEFAULT_STREAM_ID } from './frame/constants.js';
import { nextDelay, type ReconnectPolicy } from './reconnect.js';
import {
  type AcceptHalfOpen,
  type AcceptStreamOptions,
  type OpenStreamOptions,
  Session,
} from './session/session.js';
import { discardWrite, failStream, toStreamError } from './stream/core.js';

export type { AcceptHalfOpen, AcceptStreamOptions, OpenStreamOptions } from './session/session.js';

/** 'connected'; 'reconnecting' while a reconnecting client End redials; 'closed' for good. */
export type EndState = 'connected' | 'reconnecting' | 'closed';

/** What an End sets up on every connection before it is handed out (and again after each reconnect). */
export interface SetupOptions {
  /** Methods registered on the End before dial()/acceptEnd() resolve (Go's SetRegisterLocalRPCs). */
  registerLocalRpcs?: Record<string, RpcHandler>;
  /** dial()/acceptEnd() wait until the peer registered these (Go's SetWaitRemoteRPCs), up to registerTimeout. */
  waitRemoteRpcs?: string[];
  /**
   * allowHalfOpen for the streams the peer opens, chosen before any of their frames is processed (setting it after
   * acceptStream() returns can be too late: a Dismiss that came first has already ended the writable side). A
   * boolean for every stream, or a function of the stream's meta. Default false. acceptStream({ allowHalfOpen })
   * overrides it per stream.
   */
  acceptHalfOpen?: AcceptHalfOpen;
  /**
   * Client with `reconnect`: the application's own re-setup after each reconnect (re-claiming a topic, re-joining a
   * room). It is awaited, up to reconnectSetupTimeout, before the messages not yet acknowledged are sent again and
   * before other waiting work goes out; calls, publishes and opens made from inside it go out at once. If it throws
   * or times out, that connection is dropped and the End redials.
   */
  onReconnect?: (end: End) => unknown;
}

/** @internal How a client End makes a new connection. */
export type Redial = (previous: Connection) => Promise<Connection>;

export class End extends Duplex {
  /** The default stream's ID: 1. */
  readonly streamId: bigint = DEFAULT_STREAM_ID;
  /** Meta the client sent in Conn (the first connection's). */
  readonly meta: Buffer;
  readonly peer: string | undefined = undefined;
  state: EndState = 'connected';
  /** Why the End closed; undefined while open or after a clean close. */
  closeError: GeminioError | undefined;
  #session: Session;
  /** The current connection's default stream: the End's bytes go through it. */
  #stream: Stream;
  /** RPC and messaging of the default stream; outlives the connections (methods, unacknowledged messages). */
  readonly #channel: Channel;
  /** The peer's Dismiss ended our writable side (later writes are discarded, as on a Stream). */
  #endedByPeer = false;
  private closing: Promise<void> | undefined;
  private userClosed = false;
  private readonly redial: Redial | undefined;
  private readonly policy: ReconnectPolicy | undefined;
  private readonly setupOptions: SetupOptions;
  private readyWaiters = new Set<{ resolve: () => void; reject: (e: Error) => void }>();
  private sleeper: { timer: NodeJS.Timeout; resolve: () => void } | undefined;
  /** Set while onReconnect runs: work started from inside it does not wait for the reconnect to finish. */
  private readonly resetup = new AsyncLocalStorage<Connection>();
  /**
   * A reconnecting End whose peer dismissed the default stream (a Go End does that first when it closes, before
   * DisConn): the connection is about to go, so new work waits for the next one, like during a reconnect.
   */
  private parked = false;

  /** @internal Ends are made by dial() and listen(). */
  constructor(
    conn: Connection,
    options: { redial?: Redial; reconnect?: ReconnectPolicy; setup?: SetupOptions } = {},
  ) {
    super({
      // The default stream decides what the peer's Dismiss means for our writable side (see onEndedByPeer).
      allowHalfOpen: true,
      readableHighWaterMark: conn.limits.streamHighWaterMark,
      writableHighWaterMark: conn.limits.maxStreamPayload,
    });
    this.meta = conn.meta;
    this.redial = options.redial;
    this.policy = options.reconnect;
    this.setupOptions = options.setup ?? {};
    this.#channel = new Channel(endPort(this));
    [this.#session, this.#stream] = this.attach(conn, false);
  }

  /** @internal The session on the current connection. */
  get session(): Session {
    return this.#session;
  }

  /** @internal The current connection. */
  get conn(): Connection {
    return this.#session.conn;
  }

  /** @internal RPC and messaging of the End (the default stream's, across reconnects). */
  get channel(): Channel {
    return this.#channel;
  }

  /** The ClientID of the current connection. */
  get clientId(): bigint {
    return this.conn.clientId;
  }

  /** True once the current default stream's Dismiss exchange is over (or was abandoned). */
  get isFinalized(): boolean {
    return this.#stream.isFinalized;
  }

  /** 'client' for an End made by dial(), 'server' for one accepted by a Listener. */
  get role(): 'client' | 'server' {
    return this.conn.role;
  }

  get remoteAddress(): string | undefined {
    return this.conn.remoteAddress;
  }

  /** True while the End outlives its connections (a reconnecting client End not closed by the application). */
  private get reconnects(): boolean {
    return this.redial !== undefined && !this.userClosed && this.state !== 'closed';
  }

  private attach(conn: Connection, resumed: boolean): [Session, Stream] {
    const session = new Session(conn, this.setupOptions.acceptHalfOpen, this);
    const stream = session.openDefault({
      channel: this.#channel,
      onPeerDismiss: () => {
        if (this.reconnects && stream === this.#stream) this.parked = true;
      },
      onEndedByPeer: () => {
        // A reconnecting End lives on: only this connection's default stream ends (its Dismiss answers the peer's).
        if (this.reconnects || stream !== this.#stream) {
          stream.end();
          return;
        }
        this.#endedByPeer = true;
        if (!this.writableEnded) this.end();
      },
    });
    this.#session = session;
    this.#stream = stream;
    stream.on('data', (chunk: Buffer) => {
      if (!this.push(chunk)) stream.pause();
    });
    stream.on('end', () => {
      if (!this.reconnects && stream === this.#stream) this.push(null);
    });
    stream.on('error', (err: Error) => {
      if (!this.reconnects && stream === this.#stream && !this.destroyed)
        failStream(this, err as GeminioError);
    });
    conn.onClosing = () => session.stopAccepting(new ConnectionClosedError('end is closing'));
    conn.once('close', (err: GeminioError | undefined) => this.onConnectionClose(conn, err));
    conn.attach((p) => session.handlePacket(p));
    stream.opened();
    if (channels.connectionOpen.hasSubscribers) {
      channels.connectionOpen.publish({
        end: this,
        role: conn.role,
        clientId: conn.clientId,
        remoteAddress: conn.remoteAddress,
        resumed,
      } satisfies ConnectionOpenMessage);
    }
    return [session, stream];
  }

  /** @internal The listener gives the End its ClientID's replay window (shared across its reconnects). */
  useDeliveryWindow(window: DeliveryWindow): void {
    this.channel.messaging.window = window;
  }

  /** @internal Drops the connection with `err`: the End closes (or reconnects) as after any lost connection. */
  dropConnection(err: GeminioError): void {
    this.conn.destroy(err);
  }

  /** @internal Registers the setup RPCs and waits for the peer's (dial and acceptEnd call it). */
  async setup(): Promise<void> {
    const { registerLocalRpcs = {}, waitRemoteRpcs = [] } = this.setupOptions;
    const registered = Object.entries(registerLocalRpcs).map(([m, h]) => this.channel.rpc.register(m, h));
    await Promise.all([
      ...registered,
      this.channel.rpc.waitRemote(waitRemoteRpcs, this.conn.limits.registerTimeout),
    ]);
  }

  // ---- streams ----

  /** Opens a stream; resolves once the peer has acknowledged it, so data can flow at once. */
  async openStream(options: OpenStreamOptions = {}): Promise<Stream> {
    await this.ready(this.conn.limits.streamOpenTimeout, options.signal);
    return this.#session.open(toBuffer(options.meta) ?? Buffer.alloc(0), options);
  }

  /** Resolves with the next stream the peer opened; rejects once the End is closed (or, reconnecting, dropped). */
  async acceptStream(options: AcceptStreamOptions = {}): Promise<Stream> {
    // Waits across a reconnect even with failFast: accepting is not work that can fail fast, and an accept loop
    // (`for await (const s of end.streams())`) would otherwise spin while the End reconnects.
    await this.ready(Number.POSITIVE_INFINITY, undefined, false);
    return this.#session.accept(options);
  }

  /** Streams open now, the default stream excluded. */
  listStreams(): Stream[] {
    return [...this.#session.streams.values()].filter(
      (s) => s !== this.#stream && !s.destroyed && !s.isFinalized,
    );
  }

  /**
   * The End is the listener of its streams: `for await (const s of end.streams())` iterates the streams the peer
   * opens until the End closes, across reconnects. (`for await (const chunk of end)` reads the default stream's
   * bytes, as on any Readable.)
   */
  async *streams(): AsyncGenerator<Stream, void, undefined> {
    for (;;) {
      try {
        yield await this.acceptStream();
      } catch (err) {
        if (!(err instanceof ConnectionClosedError)) throw err;
        if (this.state === 'closed' || this.userClosed || !this.redial) return;
      }
    }
  }

  // ---- RPC and messaging on the End's channel wait out a reconnect (up to their timeout) ----

  async register(
    method: string,
    handler: RpcHandler,
    options: { timeout?: number; signal?: AbortSignal } = {},
  ): Promise<void> {
    const left = await this.ready(options.timeout ?? this.conn.limits.registerTimeout, options.signal);
    return this.#channel.rpc.register(
      method,
      handler,
      left === undefined ? options : { ...options, timeout: left },
    );
  }

  call(method: string, data?: string | Uint8Array, options: CallOptions = {}): Promise<CallResult> {
    // Connected (the common case): straight to the channel, without the two promises and turns of ready().
    if (this.state === 'connected' && !this.parked) return this.#channel.rpc.call(method, data, options);
    return this.callLater(method, data, options);
  }

  private async callLater(
    method: string,
    data: string | Uint8Array | undefined,
    options: CallOptions,
  ): Promise<CallResult> {
    const left = await this.ready(options.timeout ?? this.conn.limits.callTimeout, options.signal);
    return this.#channel.rpc.call(method, data, left === undefined ? options : remaining(options, left));
  }

  publish(data: string | Uint8Array, options: PublishOptions = {}): Promise<void> {
    if (this.state === 'connected' && !this.parked) return this.#channel.messaging.publish(data, options);
    return this.publishLater(data, options);
  }

  private async publishLater(data: string | Uint8Array, options: PublishOptions): Promise<void> {
    const left = await this.ready(options.timeout ?? this.conn.limits.publishTimeout, options.signal);
    return this.#channel.messaging.publish(data, left === undefined ? options : remaining(options, left));
  }

  /** Methods the peer has registered on the End. */
  get remoteMethods(): ReadonlySet<string> {
    return this.#channel.rpc.remoteMethods;
  }

  /** Resolves once the peer has registered all of `methods` on the End (bounded by `timeout`). */
  waitRemoteMethods(
    methods: string[],
    options: { timeout?: number; signal?: AbortSignal } = {},
  ): Promise<void> {
    return this.#channel.rpc.waitRemote(
      methods,
      options.timeout ?? this.conn.limits.registerTimeout,
      options.signal,
    );
  }

  /** Resolves with the next message received on the End. */
  receive(options?: { signal?: AbortSignal }): Promise<Message> {
    return this.#channel.messaging.receive(options);
  }

  /** Iterates the messages received on the End until it closes. */
  messages(): AsyncGenerator<Message> {
    return this.#channel.messaging.messages();
  }

  /**
   * The reconnect gate. Connected, it resolves with undefined at once: the caller's options go on untouched.
   * While reconnecting it waits and resolves with the time left of `timeout` (or, with `failFast`, rejects at once
   * with a retryable ConnectionClosedError).
   */
  private async ready(
    timeout: number,
    signal?: AbortSignal,
    failFast = this.policy?.failFast === true,
  ): Promise<number | undefined> {
    if (this.state === 'connected' && !this.parked) return undefined;
    if (this.inResetup()) return undefined;
    if (this.state === 'closed') throw this.closeError ?? new ConnectionClosedError('end is closed');
    if (failFast) throw new ConnectionClosedError('reconnecting', { cause: this.closeError });
    if (signal?.aborted) throw abortError(signal.reason);
    const started = Date.now();
    await new Promise<void>((resolve, reject) => {
      const finite = Number.isFinite(timeout);
      const timer = finite
        ? setTimeout(() => settle(new TimeoutError(`not reconnected within ${timeout} ms`)), timeout)
        : undefined;
      const onAbort = () => settle(abortError(signal?.reason));
      const waiter = { resolve: () => settle(), reject: (e: Error) => settle(e) };
      const settle = (err?: Error) => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        this.readyWaiters.delete(waiter);
        if (err) reject(err);
        else resolve();
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.readyWaiters.add(waiter);
    });
    return Number.isFinite(timeout) ? Math.max(1, timeout - (Date.now() - started)) : timeout;
  }

  // ---- the default stream's bytes: the End relays them to the current connection's default stream ----

  /**
   * A write after the peer's Dismiss ended our writable side is discarded, as on a Stream: its callback gets
   * StreamClosedError, and no 'error' event.
   */
  override write(
    chunk: unknown,
    encoding?: BufferEncoding | ((error: Error | null | undefined) => void),
    cb?: (error: Error | null | undefined) => void,
  ): boolean {
    if (this.#endedByPeer && !this.destroyed) return discardWrite(encoding, cb);
    return typeof encoding === 'function'
      ? super.write(chunk, encoding)
      : super.write(chunk, encoding as BufferEncoding, cb);
  }

  override _read(): void {
    this.#stream.resume();
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.relay(chunk, cb);
  }

  override _writev(chunks: Array<{ chunk: Buffer }>, cb: (err?: Error | null) => void): void {
    // Many small writes become few packets (as on a Stream).
    const data = chunks.length === 1 ? chunks[0]!.chunk : Buffer.concat(chunks.map((c) => c.chunk));
    this.relay(data, cb);
  }

  override _final(cb: (err?: Error | null) => void): void {
    this.whenConnected(cb, () => {
      const s = this.#stream;
      if (s.writableFinished || s.destroyed) return cb(s.errored ?? undefined);
      s.end((err?: Error | null) => cb(err ?? undefined));
    });
  }

  /** Raw bytes written while reconnecting wait for the new connection. */
  private relay(data: Buffer, cb: (err?: Error | null) => void): void {
    this.whenConnected(cb, () => {
      const s = this.#stream;
      // Bytes on a connection that drops while a reconnecting End lives on are lost with it, not an error.
      s.write(data, (err) => cb(err && !this.reconnects ? err : undefined));
    });
  }

  private whenConnected(cb: (err?: Error | null) => void, then: () => void): void {
    if ((this.state !== 'reconnecting' && !this.parked) || this.inResetup()) return then();
    this.ready(Number.POSITIVE_INFINITY).then(then, (err: Error) => cb(err));
  }

  /** True inside onReconnect for the connection now attached. */
  private inResetup(): boolean {
    const conn = this.resetup.getStore();
    return conn !== undefined && conn === this.conn && conn.state === 'open';
  }

  /** Runs onReconnect for `conn`, bounded by reconnectSetupTimeout. */
  private async runOnReconnect(conn: Connection): Promise<void> {
    const hook = this.setupOptions.onReconnect;
    if (!hook) return;
    const timeout = conn.limits.reconnectSetupTimeout;
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        this.resetup.run(conn, () => Promise.resolve().then(() => hook(this))),
        new Promise((_, reject) => {
          timer = setTimeout(
            () => reject(new TimeoutError(`onReconnect did not finish within ${timeout} ms`)),
            timeout,
          );
        }),
      ]);
    } finally {
      clearTimeout(timer);
    }
  }

  // ---- connection lifecycle ----

  private onConnectionClose(conn: Connection, err: GeminioError | undefined): void {
    if (channels.connectionClose.hasSubscribers) {
      channels.connectionClose.publish({
        end: this,
        role: conn.role,
        clientId: conn.clientId,
        error: err,
      } satisfies ConnectionCloseMessage);
    }
    if (conn !== this.conn) return;
    if (this.userClosed || !this.redial || this.state === 'closed') {
      this.closeForGood(err);
      return;
    }
    if (this.state === 'reconnecting') {
      // A connection made by the running reconnect loop dropped during setup: the loop carries on.
      this.#session.connectionClosed(err ?? new ConnectionClosedError());
      this.channel.rpc.disconnected(err ?? new ConnectionClosedError());
      return;
    }
    // Reconnect: the other streams end with the (retryable) error, the End itself lives on.
    const reason = err ?? new ConnectionClosedError('server closed the connection');
    this.closeError = reason;
    this.state = 'reconnecting';
    this.#session.connectionClosed(reason);
    this.channel.rpc.disconnected(reason);
    this.emit('disconnect', reason);
    this.reconnectLoop().catch((e: unknown) => this.closeForGood(e as GeminioError));
  }

  private async reconnectLoop(): Promise<void> {
    const policy = this.policy!;
    let lastError: unknown = this.closeError;
    for (let attempt = 0; attempt < policy.maxAttempts; attempt++) {
      const delayMs = nextDelay(policy, attempt);
      if (channels.endReconnecting.hasSubscribers) {
        channels.endReconnecting.publish({
          end: this,
          clientId: this.conn.clientId,
          attempt: attempt + 1,
          delayMs,
          error: lastError instanceof Error ? lastError : undefined,
        } satisfies EndReconnectingMessage);
      }
      await this.sleep(delayMs);
      if (this.userClosed) return;
      let conn: Connection;
      try {
        conn = await this.redial!(this.conn);
      } catch (err) {
        lastError = err;
        continue;
      }
      if (this.userClosed) {
        conn.destroy();
        return;
      }
      this.attach(conn, true);
      // Order matters: registrations first, then the application's re-setup, then messages waiting for an ack,
      // then new work.
      for (const method of this.channel.rpc.localMethods) {
        this.channel.rpc.announce(method, conn.limits.registerTimeout).catch(() => {});
      }
      try {
        await this.channel.rpc.waitRemote(
          this.setupOptions.waitRemoteRpcs ?? [],
          conn.limits.registerTimeout,
        );
        await this.runOnReconnect(conn);
      } catch (err) {
        lastError = err;
        conn.destroy();
        continue;
      }
      if (this.userClosed) return;
      if (conn.state !== 'open') continue; // dropped again during setup: its close handler restarted nothing
      this.channel.messaging.resend();
      this.state = 'connected';
      this.parked = false;
      this.closeError = undefined;
      for (const w of [...this.readyWaiters]) w.resolve();
      if (channels.endReconnect.hasSubscribers) {
        channels.endReconnect.publish({
          end: this,
          clientId: conn.clientId,
          attempts: attempt + 1,
        } satisfies EndReconnectMessage);
      }
      this.emit('reconnect', { clientId: conn.clientId, attempts: attempt + 1 });
      return;
    }
    throw new ConnectionClosedError(`gave up reconnecting after ${policy.maxAttempts} attempts`, {
      cause: lastError,
    });
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      this.sleeper = { timer: setTimeout(resolve, ms), resolve };
    });
  }

  private closeForGood(err: GeminioError | undefined): void {
    if (this.state === 'closed') return;
    this.state = 'closed';
    this.closeError = err;
    const failure = err ?? new ConnectionClosedError('end is closed');
    for (const w of [...this.readyWaiters]) w.reject(failure);
    if (this.sleeper) {
      clearTimeout(this.sleeper.timer);
      this.sleeper.resolve();
    }
    this.#session.connectionClosed(err);
    this.#channel.close(failure);
    // The End is the connection: when it is gone the End closes, whatever is left unread, with the error its
    // default stream ended with.
    if (this.destroyed) return;
    const failed = err ?? (this.#stream.errored as GeminioError | null) ?? undefined;
    if (failed) failStream(this, failed);
    else this.destroy();
  }

  /**
   * Graceful close: no new streams; every stream (the default one included) flushes what was written and is
   * dismissed; then the DisConn exchange. Bounded by closeTimeout at each step. Idempotent.
   */
  close(): Promise<void> {
    this.userClosed = true;
    this.closing ??= this.doClose();
    return this.closing;
  }

  private async doClose(): Promise<void> {
    if (this.state === 'reconnecting') {
      this.closeForGood(undefined);
      return;
    }
    if (this.conn.state === 'open') {
      this.#session.stopAccepting(new ConnectionClosedError('end is closing'));
      // The End flushes its own bytes into the default stream, then ends it.
      const streams = [...this.#session.streams.values()].map((s): Duplex => (s === this.#stream ? this : s));
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        Promise.all(streams.map(endAndFlush)),
        new Promise<void>((resolve) => {
          timer = setTimeout(resolve, this.conn.limits.closeTimeout);
        }),
      ]);
      clearTimeout(timer);
    }
    await this.conn.close();
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this.userClosed = true;
    if (this.state === 'reconnecting')
      this.closeForGood(err ? new ConnectionClosedError(err.message) : undefined);
    if (this.conn.state !== 'closed') {
      this.conn.destroy(err ? new ConnectionClosedError(err.message, { cause: err }) : undefined);
    }
    this.#stream.destroy();
    this.#channel.close(err ? toStreamError(err) : new StreamClosedError());
    cb(err);
  }
}

/** The End's channel's view of its stream: always the current connection's default stream. */
function endPort(end: End): StreamPort {
  return {
    streamId: DEFAULT_STREAM_ID,
    get clientId() {
      return end.conn.clientId;
    },
    get limits() {
      return end.conn.limits;
    },
    get canCancel() {
      return end.conn.canCancel;
    },
    send: (frame) => end.conn.send(frame),
    nextId: () => end.conn.ids.next(),
    pauseReading: (by) => end.conn.pauseReading(by),
    resumeReading: (by) => end.conn.resumeReading(by),
  };
}

/**
 * The options for the call or publish once connected, with `left` ms of its wait. Only a timeout the caller chose
 * goes on the wire as a deadline (as on any stream, and as in Go); a default one stays a local wait.
 */
function remaining<O extends { timeout?: number; localTimeout?: number }>(options: O, left: number): O {
  return options.timeout === undefined ? { ...options, localTimeout: left } : { ...options, timeout: left };
}

function endAndFlush(s: Duplex): Promise<void> {
  if (s.destroyed || s.writableFinished) return Promise.resolve();
  return new Promise<void>((resolve) => {
    const done = () => {
      s.off('finish', done);
      s.off('close', done);
      resolve();
    };
    s.once('finish', done);
    s.once('close', done);
    s.end();
  });
}
