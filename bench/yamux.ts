/**
 * The minimal glue to run @chainsafe/libp2p-yamux (v8, libp2p interface v3) over a plain net.Socket, for the
 * stream-throughput anchor. Yamux v8 takes a MessageStream (`Yamux.createStreamMuxer(maConn)`); the abstract
 * base @libp2p/utils AbstractMultiaddrConnection does the buffering and events, so a socket adapter only has to
 * implement sendData/sendReset/sendPause/sendResume/sendClose and feed received bytes to onData(). The muxer
 * side is client or server by `direction` ('outbound' = client, odd stream IDs).
 *
 * Two more pieces of glue, both found running it on Node 20.20:
 * - @libp2p/utils 7.4.1 and yamux 8 call Promise.withResolvers (Node >= 22) in onDrain() and ping(); Node 20
 *   lacks it (onDrain() throws a TypeError). It is defined below when missing (standard semantics).
 * - AbstractMessageStream.onDrain() keeps its first resolved promise forever (onDrainPromise is never reset), so
 *   after the first drain it resolves at once and a writer awaiting it never pauses again (the write buffer grows
 *   until the heap is exhausted). Writers here wait for the stream's 'drain' event instead (see waitDrain), as
 *   the package's own stream-utils do.
 */
import type net from 'node:net';
import { yamux } from '@chainsafe/libp2p-yamux';
import type { Logger, MultiaddrConnection, StreamMuxer } from '@libp2p/interface';
import { AbstractMultiaddrConnection, type SendResult } from '@libp2p/utils';

const P = Promise as unknown as { withResolvers?: () => unknown };
if (typeof P.withResolvers !== 'function') {
  P.withResolvers = () => {
    let resolve!: (v: unknown) => void;
    let reject!: (e: unknown) => void;
    const promise = new Promise((res, rej) => {
      resolve = res;
      reject = rej;
    });
    return { promise, resolve, reject };
  };
}

function silentLogger(): Logger {
  const log = (() => {}) as unknown as Logger;
  log.error = () => {};
  log.trace = () => {};
  log.enabled = false;
  log.newScope = () => log;
  return log;
}

class SocketConnection extends AbstractMultiaddrConnection {
  constructor(
    private readonly socket: net.Socket,
    direction: 'inbound' | 'outbound',
  ) {
    super({
      // Only used for logging and metrics by the base class; this benchmark has neither.
      remoteAddr: { toString: () => '/ip4/127.0.0.1/tcp/0' } as unknown as MultiaddrConnection['remoteAddr'],
      direction,
      log: silentLogger(),
    });
    socket.on('data', (buf: Buffer) => this.onData(buf));
    socket.on('drain', () => this.safeDispatchEvent('drain'));
    socket.on('close', () => this.onTransportClosed());
    socket.on('error', () => {});
  }

  sendData(data: Parameters<AbstractMultiaddrConnection['sendData']>[0]): SendResult {
    let canSendMore = true;
    for (const chunk of data) canSendMore = this.socket.write(chunk);
    return { sentBytes: data.byteLength, canSendMore };
  }

  sendReset(): void {
    this.socket.resetAndDestroy();
  }

  async sendClose(): Promise<void> {
    this.socket.end();
  }

  sendPause(): void {
    this.socket.pause();
  }

  sendResume(): void {
    this.socket.resume();
  }
}

/** Wraps a connected socket in a yamux muxer. */
export function yamuxOverSocket(socket: net.Socket, direction: 'inbound' | 'outbound'): StreamMuxer {
  const conn = new SocketConnection(socket, direction);
  return yamux()().createStreamMuxer(conn);
}

/** Calls `cb` on the stream's next 'drain' event (use instead of onDrain(), see above). */
export function waitDrain(stream: EventTarget, cb: () => void): void {
  stream.addEventListener('drain', () => cb(), { once: true });
}
