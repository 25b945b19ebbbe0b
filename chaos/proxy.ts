/**
 * A fault-injecting TCP proxy for resilience tests: it forwards loopback connections to a target and
 * can delay, throttle, split, corrupt, blackhole or refuse them, or kill/reset them on demand.
 */
import { EventEmitter } from 'node:events';
import { connect, createServer, type Server, type Socket } from 'node:net';
import {
  applyFaults,
  describeFaults,
  type Faults,
  type FlowFaults,
  noFaults,
  type ResolvedFaults,
} from './faults.js';
import { Pipe, type PipeCounters } from './pipe.js';

/** A host and port pair. */
export interface HostPort {
  host: string;
  port: number;
}

/** Options of {@link ChaosProxy}. */
export interface ChaosProxyOptions {
  /** Where connections are forwarded to. */
  target: HostPort;
  /** Where the proxy listens. Defaults to 127.0.0.1 on a free port (read it with `address()`). */
  listen?: { host?: string; port?: number };
  /** Initial faults (all off by default). */
  faults?: Faults;
  /**
   * Bytes a direction may hold back (for delay, throttle or split) before the proxy stops reading
   * from the sender. Default 1 MiB.
   */
  maxBufferedBytes?: number;
  /**
   * How long `killAll()` waits for peers to answer its FIN before destroying the sockets outright.
   * Default 1000 ms.
   */
  killGraceMs?: number;
}

/** Counters since the proxy was created. */
export interface ChaosStats {
  /** Connections accepted and proxied (refused ones are not included). */
  accepted: number;
  /** Connections accepted and destroyed at once because `refuse` was on. */
  refused: number;
  /** Bytes written to the target. */
  bytesUp: number;
  /** Bytes written to clients. */
  bytesDown: number;
  /** Bytes discarded (blackhole, or data left over when a connection was killed). */
  droppedBytes: number;
  /** Bytes that had a bit flipped. */
  corruptedBytes: number;
  /** Connections ended by `killAll()`. */
  killed: number;
  /** Connections reset by `resetAll()`. */
  reset: number;
}

/** Details of an accepted connection, passed with the `'connection'` event. */
export interface ConnectionInfo {
  remoteAddress: string | undefined;
  remotePort: number | undefined;
}

/** Events of {@link ChaosProxy}. */
export interface ChaosProxyEvents {
  /** A connection was accepted and is being proxied. */
  connection: [id: number, info: ConnectionInfo];
  /** Both sockets of a proxied connection have closed. */
  connectionClose: [id: number];
  /** A connection was accepted and destroyed because `refuse` is on. */
  refused: [info: ConnectionInfo];
  /** `close()` finished: the listener and every connection are closed. */
  close: [];
}

const noop = () => {};

/** Destroys `s` once everything written to it has been flushed and its FIN sent (if it was ended). */
function destroyWhenFinished(s: Socket): void {
  if (s.destroyed) return;
  if (!s.writableEnded || s.writableFinished) s.destroy();
  else s.once('finish', () => s.destroy());
}

/** Passes an error on one side to the other: a reset as a reset, anything else as a plain close. */
function propagateError(err: NodeJS.ErrnoException, other: Socket): void {
  if (other.destroyed) return;
  if (err.code === 'ECONNRESET' && !other.connecting) other.resetAndDestroy();
  else other.destroy();
}

class ProxiedConnection {
  readonly up: Pipe;
  readonly down: Pipe;
  readonly closed: Promise<void>;
  private open = 2;
  private killing = false;
  private killTimer: NodeJS.Timeout | null = null;

  constructor(
    readonly id: number,
    readonly client: Socket,
    readonly target: Socket,
    faults: (flow: 'up' | 'down') => FlowFaults,
    counters: PipeCounters,
    maxBufferedBytes: number,
    onClosed: (c: ProxiedConnection) => void,
  ) {
    // Handlers are attached before anything can fail, so socket errors never go unhandled.
    client.on('error', (err) => propagateError(err, target));
    target.on('error', (err) => propagateError(err, client));
    client.setNoDelay(true);
    target.setNoDelay(true);
    // Writes to the target before it has connected are buffered by node, so both pipes start now.
    this.up = new Pipe('up', client, target, () => faults('up'), counters, maxBufferedBytes);
    this.down = new Pipe('down', target, client, () => faults('down'), counters, maxBufferedBytes);

    let resolveClosed = noop;
    this.closed = new Promise((r) => (resolveClosed = r));
    // `toClosed` is the pipe writing to the socket that closed, `fromClosed` the one reading from it.
    const onSocketClose = (other: Socket, toClosed: Pipe, fromClosed: Pipe) => {
      toClosed.stop();
      // Whatever the closed side sent is flushed to the other side, which is then closed too: nothing
      // could reach the closed side any more anyway.
      if (!other.destroyed) {
        fromClosed.sourceGone();
        fromClosed.whenDstEnded(() => destroyWhenFinished(other));
      }
      if (--this.open === 0) {
        this.up.stop();
        this.down.stop();
        if (this.killTimer) clearTimeout(this.killTimer);
        this.killTimer = null;
        onClosed(this);
        resolveClosed();
      }
    };
    client.on('close', () => onSocketClose(target, this.down, this.up));
    target.on('close', () => onSocketClose(client, this.up, this.down));
  }

  /** Ends both sides with a FIN; sockets whose peer does not answer are destroyed after `graceMs`. */
  kill(graceMs: number): void {
    if (this.killing) return;
    this.killing = true;
    this.up.stop();
    this.down.stop();
    for (const s of [this.client, this.target]) {
      if (!s.destroyed) s.end();
    }
    this.killTimer = setTimeout(() => {
      this.killTimer = null;
      this.destroy();
    }, graceMs);
  }

  /** Aborts both sides with an RST. */
  reset(): void {
    this.up.stop();
    this.down.stop();
    for (const s of [this.client, this.target]) {
      if (!s.destroyed) s.resetAndDestroy();
    }
  }

  /** Closes both sides at once. */
  destroy(): void {
    this.up.stop();
    this.down.stop();
    this.client.destroy();
    this.target.destroy();
  }

  kick(): void {
    this.up.kick();
    this.down.kick();
  }
}

/**
 * A fault-injecting TCP proxy.
 *
 * @example
 * const proxy = new ChaosProxy({ target: { host: '127.0.0.1', port: server.port } });
 * await proxy.start();
 * const client = connect(proxy.port);
 * proxy.setFaults({ delayMs: 50, splitMaxBytes: { down: 1 } });
 * proxy.resetAll(); // every open connection gets an RST
 * await proxy.close();
 */
export class ChaosProxy extends EventEmitter<ChaosProxyEvents> {
  private readonly target: HostPort;
  private readonly listenHost: string;
  private readonly listenPort: number;
  private readonly maxBufferedBytes: number;
  private readonly killGraceMs: number;
  private readonly server: Server;
  private readonly conns = new Map<number, ProxiedConnection>();
  private settings: ResolvedFaults;
  private nextId = 1;
  private starting: Promise<HostPort> | null = null;
  private closing: Promise<void> | null = null;
  private readonly counters: ChaosStats = {
    accepted: 0,
    refused: 0,
    bytesUp: 0,
    bytesDown: 0,
    droppedBytes: 0,
    corruptedBytes: 0,
    killed: 0,
    reset: 0,
  };
  private readonly pipeCounters: PipeCounters = {
    forwarded: (flow, n) => {
      if (flow === 'up') this.counters.bytesUp += n;
      else this.counters.bytesDown += n;
    },
    dropped: (n) => {
      this.counters.droppedBytes += n;
    },
    corrupted: (n) => {
      this.counters.corruptedBytes += n;
    },
  };

  /** Creates the proxy; nothing listens until {@link ChaosProxy.start}. Throws on invalid faults. */
  constructor(options: ChaosProxyOptions) {
    super();
    this.target = { host: options.target.host, port: options.target.port };
    this.listenHost = options.listen?.host ?? '127.0.0.1';
    this.listenPort = options.listen?.port ?? 0;
    this.maxBufferedBytes = options.maxBufferedBytes ?? 1024 * 1024;
    this.killGraceMs = options.killGraceMs ?? 1000;
    this.settings = applyFaults(noFaults(), options.faults ?? {});
    // allowHalfOpen: a client's FIN is forwarded as a FIN while the other direction keeps flowing.
    this.server = createServer({ allowHalfOpen: true }, (socket) => this.onConnection(socket));
  }

  /** Starts listening; resolves with the bound address. Calling it again returns the same promise. */
  start(): Promise<HostPort> {
    if (this.closing) return Promise.reject(new Error('ChaosProxy is closed'));
    this.starting ??= new Promise<HostPort>((resolve, reject) => {
      const onError = (err: Error) => reject(err);
      this.server.once('error', onError);
      this.server.listen({ host: this.listenHost, port: this.listenPort }, () => {
        this.server.off('error', onError);
        // Later accept errors (e.g. EMFILE) must not crash the test process; node keeps listening.
        this.server.on('error', noop);
        resolve(this.address());
      });
    });
    return this.starting;
  }

  /** The bound address. Throws if the proxy is not listening. */
  address(): HostPort {
    const a = this.server.address();
    if (a === null || typeof a === 'string') throw new Error('ChaosProxy is not listening');
    return { host: a.address, port: a.port };
  }

  /** The bound port (shorthand for `address().port`). */
  get port(): number {
    return this.address().port;
  }

  /** Number of proxied connections that are not fully closed yet. */
  get connections(): number {
    return this.conns.size;
  }

  /** A snapshot of the counters. */
  get stats(): ChaosStats {
    return { ...this.counters };
  }

  /**
   * The current faults, every key present: a plain value when both directions agree, `{ up, down }`
   * when they differ.
   */
  get faults(): Required<Faults> {
    return describeFaults(this.settings);
  }

  /**
   * Changes faults; applies to open connections at once. Keys not in `partial` are kept, and a
   * `{ up }` or `{ down }` value changes only that direction. Throws (changing nothing) if a value is
   * invalid.
   * @example proxy.setFaults({ blackhole: { down: true }, delayMs: 0 })
   */
  setFaults(partial: Faults): void {
    this.settings = applyFaults(this.settings, partial);
    for (const c of this.conns.values()) c.kick();
  }

  /** Turns every fault off. */
  clearFaults(): void {
    this.settings = noFaults();
    for (const c of this.conns.values()) c.kick();
  }

  /**
   * Ends both sides of every open connection with a normal FIN (what a clean server or network close
   * looks like). Sockets whose peer does not close in turn are destroyed after `killGraceMs`.
   * @returns the number of connections killed
   */
  killAll(): number {
    let n = 0;
    for (const c of this.conns.values()) {
      c.kill(this.killGraceMs);
      n++;
    }
    this.counters.killed += n;
    return n;
  }

  /**
   * Aborts both sides of every open connection with a TCP RST, so peers see `ECONNRESET`.
   * @returns the number of connections reset
   */
  resetAll(): number {
    let n = 0;
    for (const c of [...this.conns.values()]) {
      c.reset();
      n++;
    }
    this.counters.reset += n;
    return n;
  }

  /**
   * Stops listening and destroys every connection; resolves once all sockets have closed. Safe to
   * call more than once.
   */
  close(): Promise<void> {
    this.closing ??= (async () => {
      if (this.starting) await this.starting.catch(noop);
      const serverClosed = new Promise<void>((resolve) => {
        if (this.server.listening) this.server.close(() => resolve());
        else resolve();
      });
      const all = [...this.conns.values()];
      for (const c of all) c.destroy();
      await Promise.all(all.map((c) => c.closed));
      await serverClosed;
      this.emit('close');
    })();
    return this.closing;
  }

  private onConnection(client: Socket): void {
    const info: ConnectionInfo = { remoteAddress: client.remoteAddress, remotePort: client.remotePort };
    if (this.closing || this.settings.refuse) {
      client.on('error', noop);
      client.destroy();
      if (!this.closing) {
        this.counters.refused++;
        this.emit('refused', info);
      }
      return;
    }
    const id = this.nextId++;
    const target = connect({ host: this.target.host, port: this.target.port, allowHalfOpen: true });
    const conn = new ProxiedConnection(
      id,
      client,
      target,
      (flow) => this.settings[flow],
      this.pipeCounters,
      this.maxBufferedBytes,
      (c) => {
        this.conns.delete(c.id);
        this.emit('connectionClose', c.id);
      },
    );
    this.conns.set(id, conn);
    this.counters.accepted++;
    this.emit('connection', id, info);
  }
}
