/**
 * The server side: a Listener accepts TCP or TLS connections, runs the handshake on each and queues the Ends for
 * `acceptEnd()` / `for await (const end of listener)`. A failed handshake never reaches the application: it is
 * reported as a 'handshakeError' event and the socket is closed.
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { EventEmitter } from 'node:events';
import * as net from 'node:net';
import type { Duplex } from 'node:stream';
import * as tls from 'node:tls';
import { type Address, type HostPort, parseAddress } from './address.js';
import { DeliveryWindow } from './channel/delivery-window.js';
import { type EndLimits, resolveLimits } from './config.js';
import {
  assignClientId,
  type ConnectHook,
  type ConnectInfo,
  Connection,
  HandshakeBudget,
} from './connection/connection.js';
import { channels } from './diag.js';
import type { HandshakeErrorMessage } from './diagnostics.js';
import { End, type SetupOptions } from './end.js';
import {
  ConnectionClosedError,
  type GeminioError,
  InvalidArgumentError,
  LimitExceededError,
  ListenerClosedError,
} from './errors.js';

export type { ConnectHook, ConnectInfo } from './connection/connection.js';

export interface ListenOptions extends Partial<EndLimits>, SetupOptions {
  /** Listen with TLS using these options (key, cert, ca, requestCert, ...). */
  tls?: tls.TlsOptions;
  /**
   * Decides each connection: return a ClientID (or nothing to have a fresh one assigned), or throw to refuse it
   * with an error ConnAck. A ClientID the client proposes is never used unless this hook returns it.
   */
  onConnect?: ConnectHook;
  /** Most Ends that finished the handshake but wait for acceptEnd(); more are refused. Default 1024. */
  endBacklog?: number;
  /**
   * When onConnect returns nothing: give a reconnecting client back the ClientID it proposes if it proves it is
   * its own (`resumeVerified`: assigned by this listener, presented with its resume secret). A connection that
   * still holds the ID (half-open) is then closed as replaced. Default true.
   */
  resumeClientIds?: boolean;
  /** How many recent message IDs per ClientID are remembered to drop replays after a reconnect. Default 4096. */
  deliveryWindow?: number;
}

interface ClientRecord {
  /** The End holding this ClientID now, if any. */
  current: End | undefined;
  window: DeliveryWindow;
  /** Secret handed to geminio-node clients in the ConnAck, to take the ID back after a reconnect. */
  token: Buffer;
}

/** Most ClientIDs a listener remembers (for resume and replay windows); the oldest are forgotten first. */
const REMEMBERED_CLIENTS = 4096;

/** Options for serverEnd(): the End-level ones of ListenOptions. */
export type ServerEndOptions = Omit<
  ListenOptions,
  'tls' | 'endBacklog' | 'resumeClientIds' | 'deliveryWindow'
>;

/**
 * Events: 'handshakeError' (err, remoteAddress) for connections that never became an End; 'close'.
 */
export class Listener extends EventEmitter {
  private readonly server: net.Server;
  private readonly backlog: End[] = [];
  private waiters: Array<{ resolve: (e: End) => void; reject: (e: Error) => void }> = [];
  private closed = false;
  private readonly handshaking = new Set<Duplex>();
  /** Bytes buffered across the connections still in the geminio handshake (handshakeBufferBudget). */
  private readonly handshakeBudget: HandshakeBudget;
  /** ClientIDs this listener assigned, with their resume secret and the End holding each now. */
  private readonly clients = new Map<bigint, ClientRecord>();

  /** @internal use listen() */
  constructor(private readonly options: ListenOptions) {
    super();
    const limits = resolveLimits(options);
    this.handshakeBudget = new HandshakeBudget(limits.handshakeBufferBudget);
    const onSocket = (socket: Duplex) => this.onSocket(socket);
    // The TLS handshake is bounded by handshakeTimeout too (Node's own default is 120 s), unless tls says otherwise.
    this.server = options.tls
      ? tls.createServer({ handshakeTimeout: limits.handshakeTimeout, ...options.tls }, onSocket)
      : net.createServer(onSocket);
    // TLS handshake failures are the client's problem; never let them crash the process. Node leaves the socket
    // open when someone listens for tlsClientError (a timed-out handshake kept its descriptor): close it.
    this.server.on('tlsClientError', (err: Error, socket: tls.TLSSocket) => {
      socket.destroy();
      if (channels.handshakeError.hasSubscribers) {
        channels.handshakeError.publish({
          role: 'server',
          remoteAddress: socket.remoteAddress,
          reason: (err as { code?: string }).code === 'ERR_TLS_HANDSHAKE_TIMEOUT' ? 'timeout' : 'tls',
          error: err,
        } satisfies HandshakeErrorMessage);
      }
      this.emit('handshakeError', err, socket.remoteAddress);
    });
  }

  /** @internal */
  listen(host: string, port: number): Promise<void> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, host, () => {
        this.server.off('error', reject);
        resolve();
      });
    });
  }

  /** The bound address (the real port when listening on port 0). */
  address(): HostPort {
    const a = this.server.address() as net.AddressInfo;
    return { host: a.address, port: a.port };
  }

  /**
   * Replaces the certificate, key and CA of a TLS listener for the handshakes to come (tls.Server's
   * setSecureContext); connections already established keep their session. Throws on a plain TCP listener.
   */
  setSecureContext(options: tls.SecureContextOptions): void {
    if (!(this.server instanceof tls.Server)) throw new Error('not a TLS listener');
    this.server.setSecureContext(options);
  }

  /** Resolves with the next End whose handshake completed; rejects once the listener is closed. */
  acceptEnd(): Promise<End> {
    const ready = this.backlog.shift();
    if (ready) return Promise.resolve(ready);
    if (this.closed) return Promise.reject(new ListenerClosedError());
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }

  async *[Symbol.asyncIterator](): AsyncIterator<End> {
    for (;;) {
      try {
        yield await this.acceptEnd();
      } catch (err) {
        if (err instanceof ListenerClosedError) return;
        throw err;
      }
    }
  }

  /**
   * Stops listening. Connections still handshaking and Ends never accepted are closed; Ends already accepted
   * belong to the application and stay open.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w.reject(new ListenerClosedError());
    for (const socket of this.handshaking) socket.destroy();
    // Stop listening now; server.close()'s callback would also wait for the Ends already accepted.
    this.server.close();
    await Promise.all(this.backlog.splice(0).map((e) => e.close()));
    this.emit('close');
  }

  /** The record of a ClientID this listener hands out, made when it is first assigned. */
  private record(id: bigint): ClientRecord {
    let client = this.clients.get(id);
    if (!client) {
      client = {
        current: undefined,
        window: new DeliveryWindow(this.options.deliveryWindow ?? 4096),
        token: randomBytes(16),
      };
      this.clients.set(id, client);
      if (this.clients.size > REMEMBERED_CLIENTS) {
        for (const [old, c] of this.clients) {
          if (!c.current) {
            this.clients.delete(old);
            break;
          }
        }
      }
    }
    return client;
  }

  /** Marks the End as the holder of its ClientID and gives its default stream the ClientID's replay window. */
  private track(end: End): void {
    const entry = this.record(end.clientId);
    entry.current = end;
    end.useDeliveryWindow(entry.window);
    end.once('close', () => {
      if (entry.current === end) entry.current = undefined;
    });
  }

  /**
   * True when the client proves the ClientID it proposes is its own: one this listener assigned, presented with
   * that ID's resume secret (handed out in the ConnAck that assigned it). A proposal without the secret proves
   * nothing, whether or not the ID is in use.
   */
  private resumeVerified(info: ConnectInfo): boolean {
    const known = this.clients.get(info.proposedClientId);
    const token = info.resumeToken;
    return !!known && !!token && token.length === known.token.length && timingSafeEqual(token, known.token);
  }

  /** The client moved on from a connection the server had not seen die: close it, keep the ID for the new one. */
  private replaceHolder(id: bigint): void {
    const known = this.clients.get(id);
    if (!known?.current) return;
    // Through the connection, so the old End closes with this reason like any lost connection (no 'error'
    // event the application may not listen for).
    known.current.dropConnection(
      new ConnectionClosedError('replaced by a newer connection of the same client'),
    );
    known.current = undefined;
  }

  private onSocket(socket: Duplex): void {
    if (this.closed) {
      socket.destroy();
      return;
    }
    (socket as net.Socket).setNoDelay?.(true);
    this.handshaking.add(socket);
    const endBacklog = this.options.endBacklog ?? 1024;
    const userHook = this.options.onConnect;
    const onConnect: ConnectHook = async (info) => {
      if (this.backlog.length >= endBacklog)
        throw new LimitExceededError('server busy: too many ends waiting');
      info.resumeVerified = this.resumeVerified(info);
      const decided = await userHook?.(info);
      let id: bigint;
      if (typeof decided === 'bigint' && decided !== 0n) id = decided;
      else if (info.resumeVerified && this.options.resumeClientIds !== false) id = info.proposedClientId;
      // Assigned here rather than in the connection, so the record (and its resume secret) exists for the ConnAck.
      else id = assignClientId();
      if (id === info.proposedClientId && info.resumeVerified) this.replaceHolder(id);
      this.record(id);
      return id;
    };
    const resumeTokenFor = (id: bigint) => this.clients.get(id)?.token;
    acceptServerEnd(
      socket,
      { ...this.options, onConnect },
      (end) => this.track(end),
      resumeTokenFor,
      this.handshakeBudget,
    ).then(
      (end) => {
        this.handshaking.delete(socket);
        if (this.closed) {
          end.close().catch(() => {});
          return;
        }
        const w = this.waiters.shift();
        if (w) w.resolve(end);
        else this.backlog.push(end);
      },
      (err: GeminioError) => {
        this.handshaking.delete(socket);
        // Whatever failed (handshake, timeout, setup), the socket goes: no unauthenticated descriptor stays.
        socket.destroy();
        this.emit('handshakeError', err, (socket as net.Socket).remoteAddress);
      },
    );
  }
}

/** Listens for geminio clients on a TCP (or, with `tls`, TLS) address. Resolves once bound. */
export async function listen(address: Address, options: ListenOptions = {}): Promise<Listener> {
  resolveLimits(options); // fail fast on a bad option
  if (options.endBacklog !== undefined && !(options.endBacklog > 0)) {
    throw new InvalidArgumentError(`option endBacklog must be a positive number, got ${options.endBacklog}`);
  }
  const { host, port } = parseAddress(address);
  const listener = new Listener(options);
  await listener.listen(host, port);
  return listener;
}

/**
 * Runs the server handshake and setup over an already connected Duplex (a socket, a TLS socket, an in-memory
 * pair).
 */
export function serverEnd(transport: Duplex, options: ServerEndOptions = {}): Promise<End> {
  return acceptServerEnd(transport, options);
}

/** The listener's serverEnd: `onEnd` sees the End before its setup runs; resume secrets and the handshake budget. */
async function acceptServerEnd(
  transport: Duplex,
  options: ServerEndOptions,
  onEnd?: (end: End) => void,
  resumeTokenFor?: (clientId: bigint) => Buffer | undefined,
  handshakeBudget?: HandshakeBudget,
): Promise<End> {
  const conn = new Connection({
    role: 'server',
    transport,
    limits: resolveLimits(options),
    onConnect: options.onConnect,
    resumeTokenFor,
    handshakeBudget,
  });
  await conn.start();
  const end = new End(conn, { setup: options });
  onEnd?.(end);
  try {
    await end.setup();
  } catch (err) {
    end.destroy();
    throw err;
  }
  return end;
}
