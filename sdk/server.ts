/**
 * The server side: a Listener accepts TCP or TLS connections, runs the handshake on each and queues the Ends for
 * `acceptEnd()` / `for await (const end of listener)`. A failed handshake never reaches the application: it is
 * reported as a 'handshakeError' event and the socket is closed.
 */
import { EventEmitter } from 'node:events';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import tls from 'node:tls';
import { type Address, type HostPort, parseAddress } from './address.js';
import { type EndLimits, resolveLimits } from './config.js';
import { type ConnectHook, Connection } from './connection/connection.js';
import { End } from './end.js';
import {
  type GeminioError,
  InvalidArgumentError,
  LimitExceededError,
  ListenerClosedError,
} from './errors.js';

export type { ConnectHook, ConnectInfo } from './connection/connection.js';

export interface ListenOptions extends Partial<EndLimits> {
  /** Listen with TLS using these options (key, cert, ca, requestCert, ...). */
  tls?: tls.TlsOptions;
  /**
   * Decides each connection: return a ClientID (or nothing to have a fresh one assigned), or throw to refuse it
   * with an error ConnAck. A ClientID the client proposes is never used unless this hook returns it.
   */
  onConnect?: ConnectHook;
  /** Most Ends that finished the handshake but wait for acceptEnd(); more are refused. Default 1024. */
  endBacklog?: number;
}

/** Options for serverEnd(): the End-level ones of ListenOptions. */
export type ServerEndOptions = Omit<ListenOptions, 'tls' | 'endBacklog'>;

/**
 * Events: 'handshakeError' (err, remoteAddress) for connections that never became an End; 'close'.
 */
export class Listener extends EventEmitter {
  private readonly server: net.Server;
  private readonly backlog: End[] = [];
  private waiters: Array<{ resolve: (e: End) => void; reject: (e: Error) => void }> = [];
  private closed = false;
  private readonly handshaking = new Set<Duplex>();

  /** @internal use listen() */
  constructor(private readonly options: ListenOptions) {
    super();
    const onSocket = (socket: Duplex) => this.onSocket(socket);
    this.server = options.tls ? tls.createServer(options.tls, onSocket) : net.createServer(onSocket);
    // TLS handshake failures are the client's problem; never let them crash the process.
    this.server.on('tlsClientError', (err: Error, socket: tls.TLSSocket) =>
      this.emit('handshakeError', err, socket.remoteAddress),
    );
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
    await Promise.all([
      new Promise<void>((resolve) => this.server.close(() => resolve())),
      ...this.backlog.splice(0).map((e) => e.close()),
    ]);
    this.emit('close');
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
    const onConnect: ConnectHook = (info) => {
      if (this.backlog.length >= endBacklog)
        throw new LimitExceededError('server busy: too many ends waiting');
      return userHook?.(info);
    };
    serverEnd(socket, { ...this.options, onConnect }).then(
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

/** Runs the server handshake over an already connected Duplex (a socket, a TLS socket, an in-memory pair). */
export async function serverEnd(transport: Duplex, options: ServerEndOptions = {}): Promise<End> {
  const conn = new Connection({
    role: 'server',
    transport,
    limits: resolveLimits(options),
    onConnect: options.onConnect,
  });
  await conn.start();
  return new End(conn);
}
