/**
 * The channel layer: a stream's bytes (the stream core) plus RPC and messaging on it. This is the `Stream` users
 * get from openStream() and acceptStream(); the Session routes the stream's RPC and message packets to its channel.
 */
import { StreamClosedError } from '../errors.js';
import { StreamCore, type StreamInit, toStreamError } from '../stream/core.js';
import { Channel } from './channel.js';
import type { Message, PublishOptions } from './messaging.js';
import type { StreamPort } from './port.js';
import type { CallOptions, CallResult, RpcHandler } from './rpc.js';

/** @internal */
export interface ChannelStreamInit extends StreamInit {
  /** The End's channel, which outlives this stream (the default stream of one connection). */
  channel?: Channel | undefined;
}

export class Stream extends StreamCore {
  #channel: Channel | undefined;
  /** False when the channel is the End's, which outlives this stream. */
  readonly #ownsChannel: boolean;

  /** @internal Streams are made by the Session. */
  constructor(init: ChannelStreamInit) {
    super(init);
    this.#channel = init.channel;
    this.#ownsChannel = init.channel === undefined;
  }

  /**
   * @internal RPC and messaging state, made on first use: most streams carry only bytes, and an idle stream
   * should cost little more than its Duplex.
   */
  get channel(): Channel {
    this.#channel ??= new Channel(streamPort(this));
    return this.#channel;
  }

  /** @internal True once RPC or messaging was used on this stream. */
  get hasChannel(): boolean {
    return this.#channel !== undefined;
  }

  /** Serves `method` on this stream and announces it to the peer; resolves when the peer acknowledges. */
  register(
    method: string,
    handler: RpcHandler,
    options?: { timeout?: number; signal?: AbortSignal },
  ): Promise<void> {
    return this.channel.rpc.register(method, handler, options);
  }

  /** Calls a method the peer registered on this stream. */
  call(method: string, data?: string | Uint8Array, options?: CallOptions): Promise<CallResult> {
    return this.channel.rpc.call(method, data, options);
  }

  /** Methods the peer has registered on this stream. */
  get remoteMethods(): ReadonlySet<string> {
    return this.channel.rpc.remoteMethods;
  }

  /** Resolves once the peer has registered all of `methods` on this stream (bounded by `timeout`). */
  waitRemoteMethods(
    methods: string[],
    options: { timeout?: number; signal?: AbortSignal } = {},
  ): Promise<void> {
    return this.channel.rpc.waitRemote(
      methods,
      options.timeout ?? this.conn.limits.registerTimeout,
      options.signal,
    );
  }

  /** Publishes a message; resolves when the receiver acknowledges it (unless `delivery: 'at-most-once'`). */
  publish(data: string | Uint8Array, options?: PublishOptions): Promise<void> {
    return this.channel.messaging.publish(data, options);
  }

  /** Resolves with the next message received on this stream. */
  receive(options?: { signal?: AbortSignal }): Promise<Message> {
    return this.channel.messaging.receive(options);
  }

  /** Iterates the messages received on this stream until it closes. */
  messages(): AsyncGenerator<Message> {
    return this.channel.messaging.messages();
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    super._destroy(err, (e) => {
      // Only a stream that used RPC or messaging has anything to fail (and an Error's stack is not free).
      if (this.#ownsChannel) this.#channel?.close(err ? toStreamError(err) : new StreamClosedError());
      cb(e);
    });
  }
}

/** The stream's view for RPC and messaging. */
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
