/**
 * Acknowledged messages on one stream. publish() sends a Message and, unless at-most-once, waits for the
 * MessageAck with the same PacketID on the same stream. Received messages queue up for receive(); a receiver that
 * falls behind by `receiveQueue` messages or `receiveQueueBytes` bytes pauses the socket (never drops, never grows
 * without bound).
 */

import {
  abortError,
  type GeminioError,
  LimitExceededError,
  ProtocolError,
  RemoteError,
  TimeoutError,
} from '../errors.js';
import { PacketType as T } from '../frame/constants.js';
import { encodePacket } from '../frame/encode.js';
import type { MessagePacket, Packet } from '../frame/packet.js';
import { guard, toBytes, wireDeadline } from '../util.js';
import type { DeliveryWindow } from './delivery-window.js';
import { IdMap } from './id-map.js';
import type { StreamPort } from './port.js';

export type Delivery = 'at-least-once' | 'at-most-once';

export interface PublishOptions {
  topic?: string;
  custom?: string | Uint8Array;
  /** Milliseconds to wait for the ack; default the End's publishTimeout (30 s). */
  timeout?: number;
  signal?: AbortSignal;
  /** 'at-least-once' (default) waits for the receiver's ack; 'at-most-once' resolves once the frame is queued. */
  delivery?: Delivery;
  /** @internal Re-send with this PacketID (replay after reconnect). */
  id?: bigint;
  /** @internal The local wait when the caller gave no timeout (what an End has left after a reconnect). */
  localTimeout?: number;
}

/** A received message. Call done() or error() exactly once; the sender waits for it. */
export class Message {
  private acked = false;

  /** @internal */
  constructor(
    private readonly port: StreamPort,
    readonly id: bigint,
    readonly data: Buffer,
    readonly topic: string | undefined,
    readonly custom: Buffer | undefined,
    /** The receiving End's delivery window, told the outcome for the message's replays. */
    private readonly window?: DeliveryWindow,
  ) {}

  get clientId(): bigint {
    return this.port.clientId;
  }

  get streamId(): bigint {
    return this.port.streamId;
  }

  /** Acknowledges the message: the sender's publish() resolves. */
  done(): void {
    this.ack(undefined);
  }

  /** Refuses the message: the sender's publish() rejects with this text. */
  error(err: Error | string): void {
    const text = typeof err === 'string' ? err : err.message;
    this.ack(text || 'error');
  }

  private ack(error: string | undefined): void {
    if (this.acked) return;
    this.acked = true;
    this.port.send(
      encodePacket({ type: T.MessageAck, id: this.id, sessionId: this.port.streamId, data: { error } }),
    );
    this.window?.settle(this.id, error);
  }
}

interface PendingPublish {
  /** The encoded Message, kept to send again with the same PacketID after a reconnect. */
  frame: Buffer;
  resolve: () => void;
  reject: (e: Error) => void;
  /** The ack timer of a publish without a signal (no closures for it). */
  timer: NodeJS.Timeout | undefined;
  /** A publish with a signal: its timer and listener, released together. */
  release: (() => void) | undefined;
}

function messageBytes(m: Message): number {
  return m.data.length + (m.custom?.length ?? 0);
}

export class Messenger {
  private readonly pending = new IdMap<PendingPublish>();
  private readonly queue: Message[] = [];
  /** Bytes of data and custom held in `queue`. */
  private queueBytes = 0;
  private waiters: Array<{ resolve: (m: Message) => void; reject: (e: Error) => void }> = [];
  private closedWith: GeminioError | undefined;
  private paused = false;
  /** Acks that matched no pending publish. */
  unmatchedAcks = 0;

  constructor(private readonly port: StreamPort) {}

  publish(data: string | Uint8Array, options: PublishOptions = {}): Promise<void> {
    // Every check throws inside the executor, which rejects the promise: one path for every refusal.
    return new Promise<void>((resolve, reject) => {
      if (this.closedWith) throw this.closedWith;
      if (options.signal?.aborted) throw abortError(options.signal.reason);
      const acked = options.delivery !== 'at-most-once';
      const limit = this.port.limits.maxPendingPublishes;
      if (acked && this.pending.size >= limit) {
        throw new LimitExceededError(`maxPendingPublishes (${limit}) messages already wait for an ack`);
      }
      const id = options.id ?? this.port.nextId();
      const timeout = options.timeout ?? options.localTimeout ?? this.port.limits.publishTimeout;
      const frame = encodePacket({
        type: T.Message,
        id,
        sessionId: this.port.streamId,
        data: {
          value: toBytes(data, 'data'),
          topic: options.topic,
          custom: toBytes(options.custom, 'custom'),
          deadline: wireDeadline(options.timeout),
        },
      });
      if (!acked) {
        this.port.send(frame);
        resolve();
        return;
      }
      const pending: PendingPublish = { frame, resolve, reject, timer: undefined, release: undefined };
      if (options.signal) {
        pending.release = guard(
          timeout,
          options.signal,
          () => this.timedOut(id, timeout),
          (reason) => this.settle(id, abortError(reason)),
        );
      } else if (Number.isFinite(timeout) && timeout > 0) {
        pending.timer = setTimeout(publishTimedOut, timeout, this, id, timeout);
      }
      this.pending.set(id, pending);
      this.port.send(frame);
    });
  }

  /** Resolves with the next message on this stream. */
  receive(options: { signal?: AbortSignal } = {}): Promise<Message> {
    const next = this.queue.shift();
    if (next) {
      this.queueBytes -= messageBytes(next);
      this.maybeResume();
      return Promise.resolve(next);
    }
    if (this.closedWith) return Promise.reject(this.closedWith);
    const signal = options.signal;
    if (signal?.aborted) return Promise.reject(abortError(signal.reason));
    return new Promise<Message>((resolve, reject) => {
      if (!signal) {
        this.waiters.push({ resolve, reject });
        return;
      }
      const waiter = {
        resolve: (m: Message) => {
          signal?.removeEventListener('abort', onAbort);
          resolve(m);
        },
        reject: (e: Error) => {
          signal?.removeEventListener('abort', onAbort);
          reject(e);
        },
      };
      const onAbort = () => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        reject(abortError(signal?.reason));
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.waiters.push(waiter);
    });
  }

  /** Iterates received messages until the stream closes. */
  async *messages(): AsyncGenerator<Message> {
    for (;;) {
      try {
        yield await this.receive();
      } catch (err) {
        if (this.closedWith && err === this.closedWith) return;
        throw err;
      }
    }
  }

  handlePacket(p: Packet): void {
    if (p.type === T.Message) return this.onMessage(p);
    if (p.type === T.MessageAck) {
      if (!this.pending.has(p.id)) this.unmatchedAcks++;
      return this.settle(p.id, p.data.error ? new RemoteError(p.data.error) : undefined);
    }
    throw new ProtocolError(`messaging layer got packet type ${p.type}`);
  }

  /** @internal Set on a server End: drops messages a reconnected client replays. */
  window: DeliveryWindow | undefined;

  /** @internal Sends every unacknowledged message again, same PacketID (after a reconnect). */
  resend(): void {
    for (const p of this.pending.values()) this.port.send(p.frame);
  }

  private onMessage(p: MessagePacket): void {
    const window = this.window;
    const ack = (error: string | undefined) =>
      this.port.send(
        encodePacket({ type: T.MessageAck, id: p.id, sessionId: this.port.streamId, data: { error } }),
      );
    // A replay of a message already delivered: answer it as the original is answered, deliver nothing.
    if (window && !window.admit(p.id, ack)) return;
    const m = new Message(
      this.port,
      p.id,
      p.data.value ?? Buffer.alloc(0),
      p.data.topic,
      p.data.custom,
      window,
    );
    const w = this.waiters.shift();
    if (w) {
      w.resolve(m);
      return;
    }
    this.queue.push(m);
    this.queueBytes += messageBytes(m);
    const limits = this.port.limits;
    if (
      !this.paused &&
      (this.queue.length >= limits.receiveQueue || this.queueBytes >= limits.receiveQueueBytes)
    ) {
      this.paused = true;
      this.port.pauseReading(this);
    }
  }

  private maybeResume(): void {
    const limits = this.port.limits;
    if (
      this.paused &&
      this.queue.length < limits.receiveQueue / 2 &&
      this.queueBytes < limits.receiveQueueBytes / 2
    ) {
      this.paused = false;
      this.port.resumeReading(this);
    }
  }

  private settle(id: bigint, err: Error | undefined): void {
    const pending = this.pending.get(id);
    if (!pending) return;
    this.pending.delete(id);
    clearTimeout(pending.timer);
    pending.release?.();
    if (err) pending.reject(err);
    else pending.resolve();
  }

  /** @internal A publish's ack timer fired. */
  timedOut(id: bigint, timeout: number): void {
    this.settle(id, new TimeoutError(`message not acknowledged within ${timeout} ms`));
  }

  close(err: GeminioError): void {
    if (this.closedWith) return;
    this.closedWith = err;
    for (const id of [...this.pending.keys()]) this.settle(id, err);
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w.reject(err);
    if (this.paused) {
      this.paused = false;
      this.port.resumeReading(this);
    }
  }
}

function publishTimedOut(m: Messenger, id: bigint, timeout: number): void {
  m.timedOut(id, timeout);
}
