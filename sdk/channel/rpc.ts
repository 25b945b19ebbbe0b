/**
 * RPC on one stream, both ways: Register/RegisterAck announce methods, Request/Response carry calls matched by
 * PacketID on the same stream, RequestCancel (accepted, never sent to a peer that has not said it understands it)
 * aborts a running handler. Handlers run concurrently; responses go out in completion order.
 */

import {
  AbortError,
  abortError,
  type GeminioError,
  LimitExceededError,
  NoSuchMethodError,
  ProtocolError,
  RemoteError,
  TimeoutError,
} from '../errors.js';
import { CancelType, PacketType as T } from '../frame/constants.js';
import { encodePacket } from '../frame/encode.js';
import type { MessagePacket, Packet, RegisterAckPacket, RegisterPacket } from '../frame/packet.js';
import { guard, toBytes, wireDeadline } from '../util.js';
import { IdMap } from './id-map.js';
import type { StreamPort } from './port.js';

/** What a handler receives. */
export interface RpcRequest {
  data: Buffer;
  custom: Buffer | undefined;
  method: string;
  clientId: bigint;
  streamId: bigint;
  /** The caller's deadline (its clock), when it set a timeout. */
  deadline: Date | undefined;
  /** Aborted at the deadline, on RequestCancel, or when the stream or connection closes. */
  signal: AbortSignal;
}

/** Returns the response data (Buffer, Uint8Array, string or nothing) or throws: the message becomes the error. */
export type RpcHandler = (request: RpcRequest) => unknown;

export interface CallOptions {
  /** Milliseconds; default the End's callTimeout (30 s). Sent to the peer as the request's deadline. */
  timeout?: number;
  signal?: AbortSignal;
  custom?: string | Uint8Array;
  /** @internal The local wait when the caller gave no timeout (what an End has left after a reconnect). */
  localTimeout?: number;
}

export interface CallResult {
  data: Buffer;
  /** Go never sends custom in a response; a geminio-node peer does not either. Kept for symmetry. */
  custom: Buffer | undefined;
}

interface PendingCall {
  method: string;
  resolve: (r: CallResult) => void;
  reject: (e: Error) => void;
  /** The call's timer (calls without a signal: no closures for it). */
  timer: NodeJS.Timeout | undefined;
  /** Calls with a signal: the timer and listener, released together. */
  release: (() => void) | undefined;
  /** When the call times out (Date.now() ms; Infinity without a timeout), and its timeout. */
  deadline: number;
  timeout: number;
}

/** Method names as the bytes a Request carries, for the methods called most (bounded, see keyOf). */
const KEY_CACHE_LIMIT = 256;

interface PendingRegister {
  resolve: () => void;
  reject: (e: Error) => void;
  release: () => void;
}

const NO_SUCH_RPC = 'no such rpc';

export class RpcEndpoint {
  private readonly handlers = new Map<string, RpcHandler>();
  /** Methods the peer registered on this stream. */
  readonly remoteMethods = new Set<string>();
  private remoteWaiters: Array<() => void> = [];
  private readonly calls = new IdMap<PendingCall>();
  private readonly keys = new Map<string, Buffer>();
  private readonly registers = new Map<bigint, PendingRegister>();
  private readonly running = new Map<bigint, RunningCall>();
  private readonly closeWaiters = new Set<(err: Error) => void>();
  private closedWith: GeminioError | undefined;
  /** Responses that matched no pending call (late, after a timeout, or bogus). */
  unmatchedResponses = 0;

  constructor(private readonly port: StreamPort) {}

  /** Names of the methods registered locally. */
  get localMethods(): string[] {
    return [...this.handlers.keys()];
  }

  /**
   * Serves `method` on this stream and tells the peer (Register). Resolves on RegisterAck; the handler serves
   * calls as soon as this is called.
   */
  register(
    method: string,
    handler: RpcHandler,
    options: { timeout?: number; signal?: AbortSignal } = {},
  ): Promise<void> {
    if (typeof method !== 'string' || method === '')
      return Promise.reject(new TypeError('method must be a non-empty string'));
    if (typeof handler !== 'function') return Promise.reject(new TypeError('handler must be a function'));
    this.handlers.set(method, handler);
    return this.announce(method, options.timeout ?? this.port.limits.registerTimeout, options.signal);
  }

  /** Sends Register for a method already served (used again after a reconnect). */
  announce(method: string, timeout: number, signal?: AbortSignal): Promise<void> {
    if (this.closedWith) return Promise.reject(this.closedWith);
    const id = this.port.nextId();
    return new Promise<void>((resolve, reject) => {
      const release = guard(
        timeout,
        signal,
        () =>
          this.settleRegister(
            id,
            new TimeoutError(`register ${method}: no RegisterAck within ${timeout} ms`),
          ),
        (reason) => this.settleRegister(id, abortError(reason)),
      );
      this.registers.set(id, { resolve, reject, release });
      this.port.send(
        encodePacket({ type: T.Register, id, sessionId: this.port.streamId, method: Buffer.from(method) }),
      );
    });
  }

  /** Calls a method the peer serves on this stream. */
  call(method: string, data?: string | Uint8Array, options: CallOptions = {}): Promise<CallResult> {
    // Every check throws inside the executor, which rejects the promise: one path for every refusal.
    return new Promise<CallResult>((resolve, reject) => {
      if (this.closedWith) throw this.closedWith;
      if (typeof method !== 'string' || method === '')
        throw new TypeError('method must be a non-empty string');
      if (options.signal?.aborted) throw abortError(options.signal.reason);
      const limit = this.port.limits.maxPendingCalls;
      if (this.calls.size >= limit)
        throw new LimitExceededError(`maxPendingCalls (${limit}) calls already wait`);
      const timeout = options.timeout ?? options.localTimeout ?? this.port.limits.callTimeout;
      const id = this.port.nextId();
      const frame = encodePacket({
        type: T.Request,
        id,
        sessionId: this.port.streamId,
        data: {
          key: this.keyOf(method),
          value: toBytes(data, 'data'),
          custom: toBytes(options.custom, 'custom'),
          deadline: wireDeadline(options.timeout),
        },
      });
      const pending: PendingCall = {
        method,
        resolve,
        reject,
        timer: undefined,
        release: undefined,
        deadline: Number.isFinite(timeout) && timeout > 0 ? Date.now() + timeout : Number.POSITIVE_INFINITY,
        timeout,
      };
      if (options.signal) {
        pending.release = guard(
          timeout,
          options.signal,
          () => this.timedOut(id, timeout),
          (reason) => this.cancel(id, CancelType.Canceled, abortError(reason)),
        );
      } else if (Number.isFinite(timeout) && timeout > 0) {
        // The timer's arguments instead of closures: one object less per call.
        pending.timer = setTimeout(callTimedOut, timeout, this, id, timeout);
      }
      this.calls.set(id, pending);
      this.port.send(frame);
    });
  }

  /** @internal A call's timer fired. */
  timedOut(id: bigint, timeout: number): void {
    const pending = this.calls.get(id);
    if (!pending) return;
    this.cancel(
      id,
      CancelType.DeadlineExceeded,
      new TimeoutError(`call ${pending.method} timed out after ${timeout} ms`),
    );
  }

  /** The method name's bytes; the names called most are kept (a bounded number of them). */
  private keyOf(method: string): Buffer {
    let key = this.keys.get(method);
    if (key === undefined) {
      key = Buffer.from(method);
      if (this.keys.size < KEY_CACHE_LIMIT) this.keys.set(method, key);
    }
    return key;
  }

  /** Resolves once the peer has registered every one of `methods` on this stream. */
  waitRemote(methods: string[], timeout: number, signal?: AbortSignal): Promise<void> {
    const missing = () => methods.filter((m) => !this.remoteMethods.has(m));
    if (missing().length === 0) return Promise.resolve();
    if (this.closedWith) return Promise.reject(this.closedWith);
    return new Promise<void>((resolve, reject) => {
      const check = () => {
        if (missing().length > 0) return;
        done();
        resolve();
      };
      const fail = (err: Error) => {
        done();
        reject(err);
      };
      const release = guard(
        timeout,
        signal,
        () => fail(new TimeoutError(`peer did not register ${missing().join(', ')} within ${timeout} ms`)),
        (reason) => fail(abortError(reason)),
      );
      const onClose = (err: Error) => fail(err);
      const done = () => {
        release();
        this.remoteWaiters = this.remoteWaiters.filter((w) => w !== check);
        this.closeWaiters.delete(onClose);
      };
      this.remoteWaiters.push(check);
      this.closeWaiters.add(onClose);
    });
  }

  handlePacket(p: Packet): void {
    switch (p.type) {
      case T.Request:
        return this.onRequest(p);
      case T.Response:
        return this.onResponse(p);
      case T.Register:
        return this.onRegister(p);
      case T.RegisterAck:
        return this.onRegisterAck(p);
      case T.RequestCancel: {
        const ctl = this.running.get(p.id);
        ctl?.abort(new AbortError(p.cancelType === 2 ? 'caller deadline exceeded' : 'caller canceled'));
        return;
      }
      default:
        throw new ProtocolError(`RPC layer got packet type ${p.type}`);
    }
  }

  private onRegister(p: RegisterPacket): void {
    const method = p.method.toString('utf8');
    // Acknowledge at once, always: a Go peer waits for this with no timeout.
    if (method === '') {
      this.port.send(
        encodePacket({
          type: T.RegisterAck,
          id: p.id,
          sessionId: this.port.streamId,
          data: { error: 'empty method name' },
        }),
      );
      return;
    }
    this.port.send(encodePacket({ type: T.RegisterAck, id: p.id, sessionId: this.port.streamId, data: {} }));
    this.remoteMethods.add(method);
    for (const w of [...this.remoteWaiters]) w();
  }

  private onRegisterAck(p: RegisterAckPacket): void {
    this.settleRegister(p.id, p.data.error ? new RemoteError(p.data.error) : undefined);
  }

  private settleRegister(id: bigint, err: Error | undefined): void {
    const pending = this.registers.get(id);
    if (!pending) return;
    this.registers.delete(id);
    pending.release();
    if (err) pending.reject(err);
    else pending.resolve();
  }

  private onResponse(p: MessagePacket): void {
    const pending = this.calls.get(p.id);
    if (!pending) {
      this.unmatchedResponses++;
      return;
    }
    const error = p.data.error;
    if (error) {
      // An error that comes once the call's deadline passed is the timeout's: the handler was aborted at that
      // deadline, and only the order of two timers due at the same moment (ours, the handler's) decided which
      // answer came first. On a loaded machine either can; the caller sees the same TimeoutError both ways.
      if (Date.now() >= pending.deadline) return this.timedOut(p.id, pending.timeout);
      this.settleCall(
        p.id,
        error.startsWith(NO_SUCH_RPC) ? new NoSuchMethodError(error) : new RemoteError(error),
      );
      return;
    }
    this.calls.delete(p.id);
    releaseCall(pending);
    pending.resolve({ data: p.data.value ?? Buffer.alloc(0), custom: p.data.custom });
  }

  /** A call gave up: fail it here and, if the peer understands RequestCancel, abort its handler there. */
  private cancel(id: bigint, cancelType: number, err: Error): void {
    if (!this.calls.has(id)) return;
    this.settleCall(id, err);
    if (this.port.canCancel) {
      this.port.send(encodePacket({ type: T.RequestCancel, id, sessionId: this.port.streamId, cancelType }));
    }
  }

  private settleCall(id: bigint, err: Error): void {
    const pending = this.calls.get(id);
    if (!pending) return;
    this.calls.delete(id);
    releaseCall(pending);
    pending.reject(err);
  }

  private onRequest(p: MessagePacket): void {
    const key = p.data.key;
    const method = key?.toString('utf8') ?? '';
    const handler = this.handlers.get(method);
    if (!handler) {
      this.respond(p.id, key, undefined, `${NO_SUCH_RPC}: ${method}`);
      return;
    }
    const call = new RunningCall(earliest(p.data.deadline, p.data.contextDeadline));
    const request = new Request(
      p.data.value ?? Buffer.alloc(0),
      p.data.custom,
      method,
      this.port.clientId,
      this.port.streamId,
      call,
    );
    // A synchronous handler is answered at once, without a promise, a closure or an entry in `running` (nothing
    // can cancel it while it runs); a promise gets both callbacks and is cancellable until it settles.
    let result: unknown;
    try {
      result = handler(request);
    } catch (err) {
      call.done();
      return this.respond(p.id, key, undefined, errorText(err));
    }
    if (result !== null && typeof (result as PromiseLike<unknown>)?.then === 'function') {
      this.running.set(p.id, call);
      (result as PromiseLike<unknown>).then(
        (value) => {
          this.finish(p.id, call);
          this.answer(p.id, key, value);
        },
        (err) => {
          this.finish(p.id, call);
          this.respond(p.id, key, undefined, errorText(err));
        },
      );
    } else {
      call.done();
      this.answer(p.id, key, result);
    }
  }

  private finish(id: bigint, call: RunningCall): void {
    call.done();
    if (this.running.get(id) === call) this.running.delete(id);
  }

  /** A handler's result as the Response, or its conversion error as the Response's error. */
  private answer(id: bigint, key: Buffer | undefined, result: unknown): void {
    let value: Buffer | undefined;
    try {
      value = toBytes(result, 'handler result');
    } catch (err) {
      return this.respond(id, key, undefined, errorText(err));
    }
    this.respond(id, key, value, undefined);
  }

  /** The Response carries the Request's key back as it came (Go does the same with the method name). */
  private respond(
    id: bigint,
    key: Buffer | undefined,
    value: Buffer | undefined,
    error: string | undefined,
  ): void {
    if (this.closedWith) return;
    this.port.send(
      encodePacket({
        type: T.Response,
        id,
        sessionId: this.port.streamId,
        data: { key, value: error ? undefined : value, error },
      }),
    );
  }

  /**
   * @internal The connection dropped but the End will reconnect: fail what was in flight (retryable), forget the
   * peer's registrations, keep the local handlers.
   */
  disconnected(err: GeminioError): void {
    for (const id of [...this.calls.keys()]) this.settleCall(id, err);
    for (const id of [...this.registers.keys()]) this.settleRegister(id, err);
    for (const w of [...this.closeWaiters]) w(err);
    for (const call of this.running.values()) call.abort(err);
    this.running.clear();
    this.remoteMethods.clear();
  }

  /** The stream or connection closed: fail pending calls and registrations, abort running handlers. */
  close(err: GeminioError): void {
    if (this.closedWith) return;
    this.closedWith = err;
    for (const id of [...this.calls.keys()]) this.settleCall(id, err);
    for (const id of [...this.registers.keys()]) this.settleRegister(id, err);
    for (const w of [...this.closeWaiters]) w(err);
    for (const call of this.running.values()) call.abort(err);
    this.running.clear();
  }
}

/**
 * What a handler receives. A class, not an object literal with a `get signal()`: a literal's getter is a new
 * closure per request, and V8 gives each such object a map of its own (the accessor lives in the map), which kept
 * every request's objects alive through minor GCs until a major one (~300 bytes promoted per call: measured with
 * `node --trace-gc-nvp`, issue 14 round 4).
 */
class Request implements RpcRequest {
  readonly deadline: Date | undefined;
  readonly #call: RunningCall;

  constructor(
    readonly data: Buffer,
    readonly custom: Buffer | undefined,
    readonly method: string,
    readonly clientId: bigint,
    readonly streamId: bigint,
    call: RunningCall,
  ) {
    this.#call = call;
    this.deadline = call.deadline === undefined ? undefined : new Date(call.deadline);
  }

  get signal(): AbortSignal {
    return this.#call.signal;
  }
}

/**
 * A handler in progress. Its AbortSignal (and the deadline timer behind it) is made only if the handler looks
 * at `signal`: most handlers never do, and a controller plus a timer per request was a measurable cost.
 */
class RunningCall {
  private controller: AbortController | undefined;
  private timer: NodeJS.Timeout | undefined;
  private reason: unknown;
  private finished = false;

  constructor(readonly deadline: number | undefined) {}

  get signal(): AbortSignal {
    if (!this.controller) {
      this.controller = new AbortController();
      if (this.reason !== undefined) this.controller.abort(this.reason);
      else if (this.deadline !== undefined && !this.finished) this.arm();
    }
    return this.controller.signal;
  }

  /** Aborts at the deadline by the wall clock: a timer may fire a millisecond before Date.now() reaches it. */
  private arm(): void {
    const left = this.deadline! - Date.now();
    if (left <= 0) this.abort(new TimeoutError('deadline exceeded'));
    else this.timer = setTimeout(rearm, left, this);
  }

  /** @internal */
  expire(): void {
    if (this.reason === undefined && !this.finished) this.arm();
  }

  abort(reason: unknown): void {
    if (this.reason !== undefined) return;
    this.reason = reason;
    clearTimeout(this.timer);
    this.controller?.abort(reason);
  }

  done(): void {
    this.finished = true;
    clearTimeout(this.timer);
  }
}

function rearm(call: RunningCall): void {
  call.expire();
}

function earliest(a: number | undefined, b: number | undefined): number | undefined {
  if (a === undefined) return b;
  if (b === undefined) return a;
  return Math.min(a, b);
}

function errorText(err: unknown): string {
  const text = err instanceof Error ? err.message : String(err);
  return text || 'error';
}

function callTimedOut(rpc: RpcEndpoint, id: bigint, timeout: number): void {
  rpc.timedOut(id, timeout);
}

function releaseCall(pending: PendingCall): void {
  clearTimeout(pending.timer);
  pending.release?.();
}
