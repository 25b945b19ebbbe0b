/**
 * An End is one side of a geminio connection. It is also the default stream (ID 1): write to it and read from it
 * like any stream. It opens and accepts the other streams, and it is their listener: `for await (const s of end)`.
 */

import { toBuffer } from './config.js';
import type { Connection } from './connection/connection.js';
import { ConnectionClosedError, type GeminioError } from './errors.js';
import { DEFAULT_STREAM_ID } from './frame/constants.js';
import { Multiplexer, type OpenStreamOptions } from './stream/multiplexer.js';
import { type ApplicationFactory, failStream, Stream } from './stream/stream.js';

export type { OpenStreamOptions } from './stream/multiplexer.js';

export class End extends Stream {
  /** @internal */ readonly mux: Multiplexer;
  private closing: Promise<void> | undefined;
  /** Why the End closed; undefined while open or after a clean close. */
  closeError: GeminioError | undefined;

  /** @internal Ends are made by dial() and listen(). */
  constructor(conn: Connection, application?: ApplicationFactory) {
    const mux = new Multiplexer(conn, application);
    super({
      conn,
      streamId: DEFAULT_STREAM_ID,
      meta: conn.meta,
      peer: undefined,
      application,
      onFinalized: () => {},
    });
    this.mux = mux;
    mux.addDefault(this);
    conn.onPacket = (p) => mux.handlePacket(p);
    conn.onClosing = () => mux.stopAccepting(new ConnectionClosedError('end is closing'));
    conn.once('close', (err: GeminioError | undefined) => {
      this.closeError = err;
      mux.connectionClosed(err);
    });
  }

  /** 'client' for an End made by dial(), 'server' for one accepted by a Listener. */
  get role(): 'client' | 'server' {
    return this.conn.role;
  }

  get remoteAddress(): string | undefined {
    return this.conn.remoteAddress;
  }

  /** Opens a stream; resolves once the peer has acknowledged it, so data can flow at once. */
  openStream(options: OpenStreamOptions = {}): Promise<Stream> {
    return this.mux.open(toBuffer(options.meta) ?? Buffer.alloc(0), options);
  }

  /** Resolves with the next stream the peer opened; rejects once the End is closing or closed. */
  acceptStream(): Promise<Stream> {
    return this.mux.accept();
  }

  /** Streams open now, the default stream excluded. */
  listStreams(): Stream[] {
    return [...this.mux.streams.values()].filter((s) => s !== this && !s.destroyed && !s.isFinalized);
  }

  /**
   * The End is the listener of its streams: iterates the streams the peer opens, until the End closes.
   * (To read the default stream's raw bytes, use 'data' events or `Readable.prototype[Symbol.asyncIterator]`.)
   */
  override [Symbol.asyncIterator](): NodeJS.AsyncIterator<Stream> {
    const next = async (): Promise<IteratorResult<Stream>> => {
      try {
        return { value: await this.acceptStream(), done: false };
      } catch (err) {
        if (err instanceof ConnectionClosedError) return { value: undefined, done: true };
        throw err;
      }
    };
    const it: NodeJS.AsyncIterator<Stream> = {
      next,
      return: async (): Promise<IteratorResult<Stream>> => ({ value: undefined, done: true }),
      [Symbol.asyncIterator]: () => it,
    };
    return it;
  }

  /**
   * Graceful close: no new streams; every stream (the default one included) flushes what was written and is
   * dismissed; then the DisConn exchange. Bounded by closeTimeout at each step. Idempotent.
   */
  close(): Promise<void> {
    this.closing ??= this.doClose();
    return this.closing;
  }

  private async doClose(): Promise<void> {
    if (this.conn.state === 'open') {
      this.mux.stopAccepting(new ConnectionClosedError('end is closing'));
      const streams = [...this.mux.streams.values()];
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

  /** @internal The End is the connection: when it is gone the End closes, whatever is left unread. */
  override connectionClosed(err: GeminioError | undefined): void {
    super.connectionClosed(err);
    if (this.destroyed) return;
    if (err) failStream(this, err);
    else this.destroy();
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    if (this.conn.state !== 'closed') {
      this.conn.destroy(err ? new ConnectionClosedError(err.message, { cause: err }) : undefined);
    }
    super._destroy(err, cb);
  }
}

function endAndFlush(s: Stream): Promise<void> {
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
