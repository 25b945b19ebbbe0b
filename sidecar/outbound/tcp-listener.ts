/**
 * An outbound TCP listener: each accepted TCP connection becomes one stream to a service behind an End, with
 * half-close carried (see ../proxy/splice.ts). When the End is down the connection is closed at once.
 */
import net from 'node:net';
import type { TcpOutboundConfig } from '../config/schema.js';
import { listenOn } from '../net/listen.js';
import type { Logger } from '../observe/logger.js';
import type { Direction } from '../observe/metrics.js';
import { splice } from '../proxy/splice.js';
import { streamMeta } from '../proxy/stream-meta.js';
import type { ListenerDeps } from './http-listener.js';
import { type EndSource, lease } from './upstreams.js';

export type TcpListenerConfig = Omit<TcpOutboundConfig, 'upstream'>;

export class TcpOutboundListener {
  private readonly server: net.Server;
  private readonly sockets = new Set<net.Socket>();
  private readonly log: Logger;

  constructor(
    readonly config: TcpListenerConfig,
    private readonly source: EndSource,
    private readonly direction: Direction,
    private readonly deps: ListenerDeps,
  ) {
    this.log = deps.logger.child({ listener: config.name });
    this.server = net.createServer({ allowHalfOpen: true }, (socket) => {
      this.onSocket(socket).catch((err: Error) => {
        this.log.debug({ err: err.message }, 'tcp connection failed');
        socket.destroy();
      });
    });
  }

  get name(): string {
    return this.config.name;
  }

  async start(): Promise<void> {
    await listenOn(this.server, this.config.listen);
    this.log.info({ listen: this.config.listen, service: this.config.service }, 'tcp listener started');
  }

  address(): net.AddressInfo {
    return this.server.address() as net.AddressInfo;
  }

  private async onSocket(socket: net.Socket): Promise<void> {
    socket.setNoDelay(true);
    socket.on('error', () => {});
    this.sockets.add(socket);
    const done = this.deps.inflight.begin();
    socket.once('close', () => {
      this.sockets.delete(socket);
      done();
    });
    const { service } = this.config;
    const end = this.source.current();
    const decision = await this.deps.hooks.decide('stream', {
      clientId: end ? String(end.clientId) : undefined,
      service,
      direction: this.direction,
      listener: this.config.name,
    });
    if (!decision.allow || !end) {
      if (!end)
        this.log.warn({ upstream: this.source.name }, 'upstream not connected; closing tcp connection');
      socket.destroy();
      return;
    }
    // Each TCP connection picks an endpoint, and holds it (in flight) until the connection closes.
    const held = lease(this.source);
    if (!held) {
      this.log.warn({ upstream: this.source.name }, 'no endpoint can take it; closing tcp connection');
      socket.destroy();
      return;
    }
    socket.pause(); // hold the client's first bytes until the stream is open
    const span = this.deps.tracing.start(`stream ${service}`, 'client', undefined, {
      'geminio.listener': this.config.name,
      'geminio.service': service,
      'geminio.direction': this.direction,
      'geminio.upstream': this.source.name,
      'geminio.client_id': String(held.end.clientId),
      'geminio.authz.decision': 'allow',
      'network.peer.address': socket.remoteAddress,
    });
    let stream: Awaited<ReturnType<typeof held.end.openStream>>;
    const t0 = performance.now();
    try {
      stream = await held.end.openStream({
        meta: streamMeta(service, 'tcp', span?.carrier()),
        allowHalfOpen: true,
      });
    } catch (err) {
      held.done({ ok: false, ms: performance.now() - t0 });
      this.deps.metrics.streamOpenFailures.inc({ direction: this.direction, service });
      span?.end((err as Error).message);
      throw err;
    }
    const openMs = performance.now() - t0;
    socket.once('close', () => held.done({ ok: true, ms: openMs }));
    span?.set({ 'geminio.stream_id': String(stream.streamId) });
    stream.once('close', () => span?.end());
    if (socket.destroyed) {
      stream.destroy();
      return;
    }
    this.deps.metrics.trackStream(stream, this.direction, service);
    splice(socket, stream);
    socket.resume();
  }

  /** Stops accepting; open connections go on until they end (or destroy()). */
  stopAccepting(): void {
    this.server.close();
  }

  async close(): Promise<void> {
    this.stopAccepting();
  }

  destroy(): void {
    this.server.close();
    for (const s of this.sockets) s.destroy();
  }
}
