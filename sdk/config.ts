/**
 * Every limit and timeout of an End, with its default and its check. Durations are milliseconds; sizes are bytes.
 */

import { InvalidArgumentError } from './errors.js';
import { EXTENSION_INITIAL_WINDOW, HEARTBEAT_INTERVALS_MS } from './frame/constants.js';
import { DEFAULT_MAX_PACKET_LENGTH } from './frame/decode.js';

export interface EndLimits {
  /** How long the Conn/ConnAck handshake may take. Default 10 s, as in Go. */
  handshakeTimeout: number;
  /**
   * Client: how often a Heartbeat is sent. Default 20 s, as in Go. The Conn packet can only declare 5, 20, 80 or
   * 320 s, so the smallest of those at or above this value is declared (the server times out after twice that).
   */
  heartbeatInterval: number;
  /**
   * How long the peer may stay silent before the connection is declared dead. Any packet counts as a sign of life.
   * Client default: 2 x heartbeatInterval (the Go client has no such check). Server default: 2 x the interval the
   * client declared, as in Go.
   */
  heartbeatTimeout: number | undefined;
  /** Largest body a frame may declare; checked from the header before any allocation. Default 16 MiB. */
  maxPacketLength: number;
  /**
   * Largest body a frame may declare before the handshake is done (Conn, ConnAck): a peer not yet authenticated
   * cannot make us buffer a maxPacketLength frame. Default 64 KiB (Conn carries only the meta and a few fields).
   */
  maxHandshakePacketLength: number;
  /**
   * Listener only: bytes buffered across all its connections still in the handshake; a connection that would go
   * past it is closed. Default 16 MiB.
   */
  handshakeBufferBudget: number;
  /** Largest payload of one Stream packet we send; bigger writes are split. Default 64 KiB. */
  maxStreamPayload: number;
  /** How long a stream open waits for SessionAck. Default 10 s (Go: 30 s). */
  streamOpenTimeout: number;
  /**
   * How long a graceful close (Dismiss or DisConn exchange) may take before the stream or socket is dropped. For a
   * stream it counts from the first Dismiss in either direction. Default 5 s (Go: 30 s per stream).
   */
  closeTimeout: number;
  /**
   * Go peers only (their Dismiss can overtake their last writes): how long a half-open stream (one that keeps
   * writing after the peer's Dismiss) still takes data after the peer's Dismiss before its readable side ends.
   * Streams that answer the Dismiss at once end their readable side when the exchange completes. Default 200 ms.
   */
  dismissGrace: number;
  /** Most streams open at once on one connection, both directions, stream 1 excluded. Default 4096. */
  maxStreams: number;
  /** Most incoming streams waiting for acceptStream(); more are refused with an error SessionAck. Default 256. */
  acceptBacklog: number;
  /** Bytes a stream buffers for a slow reader before the socket is paused. Default 256 KiB. */
  streamHighWaterMark: number;
  /** Default timeout of call() when the call gives none. Default 30 s (Go: none). */
  callTimeout: number;
  /** Default timeout of an acknowledged publish(). Default 30 s (Go: none). */
  publishTimeout: number;
  /** How long register() waits for RegisterAck. Default 10 s (Go: forever). */
  registerTimeout: number;
  /** How long a reconnecting client's onReconnect may run before that connection is dropped. Default 10 s. */
  reconnectSetupTimeout: number;
  /** Messages a stream queues for a receiver that does not keep up before the socket is paused. Default 1024. */
  receiveQueue: number;
  /** Bytes of message data (and custom) a stream queues for such a receiver before the socket is paused. Default 16 MiB. */
  receiveQueueBytes: number;
  /**
   * Offer the flow-control extension (per-stream windows) at the handshake. Used only when the peer is
   * geminio-node and agrees; with a Go peer nothing changes on the wire. Default true.
   */
  flowControl: boolean;
  /** Receive window a stream starts with under flow control; at least 256 KiB (the extension's floor). */
  initialWindow: number;
  /** Largest receive window a stream grows to when its sender is starved of credit. Default 16 MiB. */
  maxWindow: number;
  /** Sum of all stream receive windows of a connection beyond which windows stop growing. Default 64 MiB. */
  maxConnectionWindow: number;
  /**
   * Bytes buffered for readers across a connection's streams before the socket is paused, for peers without the
   * flow-control extension (Go). With it, windows bound memory instead. Default 64 MiB.
   */
  maxBufferedBytes: number;
  /** Calls waiting for a response on one stream; more reject with LimitExceededError. Default 4096. */
  maxPendingCalls: number;
  /** Acknowledged publishes waiting for an ack on one stream; more reject with LimitExceededError. Default 4096. */
  maxPendingPublishes: number;
}

export const defaultLimits: Readonly<EndLimits> = Object.freeze({
  handshakeTimeout: 10_000,
  heartbeatInterval: 20_000,
  heartbeatTimeout: undefined,
  maxPacketLength: DEFAULT_MAX_PACKET_LENGTH,
  maxHandshakePacketLength: 64 * 1024,
  handshakeBufferBudget: 16 * 1024 * 1024,
  maxStreamPayload: 64 * 1024,
  streamOpenTimeout: 10_000,
  closeTimeout: 5_000,
  dismissGrace: 200,
  maxStreams: 4096,
  acceptBacklog: 256,
  streamHighWaterMark: 256 * 1024,
  callTimeout: 30_000,
  publishTimeout: 30_000,
  registerTimeout: 10_000,
  reconnectSetupTimeout: 10_000,
  receiveQueue: 1024,
  receiveQueueBytes: 16 * 1024 * 1024,
  flowControl: true,
  initialWindow: 256 * 1024,
  maxWindow: 16 * 1024 * 1024,
  maxConnectionWindow: 64 * 1024 * 1024,
  maxBufferedBytes: 64 * 1024 * 1024,
  maxPendingCalls: 4096,
  maxPendingPublishes: 4096,
});

const positive: Array<keyof EndLimits> = [
  'handshakeTimeout',
  'heartbeatInterval',
  'maxPacketLength',
  'maxHandshakePacketLength',
  'handshakeBufferBudget',
  'maxStreamPayload',
  'streamOpenTimeout',
  'closeTimeout',
  'dismissGrace',
  'maxStreams',
  'acceptBacklog',
  'streamHighWaterMark',
  'callTimeout',
  'publishTimeout',
  'registerTimeout',
  'reconnectSetupTimeout',
  'receiveQueue',
  'receiveQueueBytes',
  'initialWindow',
  'maxWindow',
  'maxConnectionWindow',
  'maxBufferedBytes',
  'maxPendingCalls',
  'maxPendingPublishes',
];

/** Merges user options over the defaults and checks each value; the error names the option and the value. */
export function resolveLimits(options: Partial<EndLimits> = {}): EndLimits {
  const out: EndLimits = { ...defaultLimits };
  for (const key of Object.keys(defaultLimits) as Array<keyof EndLimits>) {
    const value = options[key];
    if (value !== undefined) (out as unknown as Record<string, unknown>)[key] = value;
  }
  for (const key of positive) {
    const value = out[key];
    if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) {
      throw new InvalidArgumentError(`option ${key} must be a positive number, got ${String(value)}`);
    }
  }
  if (out.heartbeatTimeout !== undefined && !(out.heartbeatTimeout > 0)) {
    throw new InvalidArgumentError(
      `option heartbeatTimeout must be a positive number, got ${out.heartbeatTimeout}`,
    );
  }
  if (out.heartbeatInterval > HEARTBEAT_INTERVALS_MS[3]) {
    throw new InvalidArgumentError(
      `option heartbeatInterval must be at most 320000 ms, got ${out.heartbeatInterval}`,
    );
  }
  if (typeof out.flowControl !== 'boolean') {
    throw new InvalidArgumentError(`option flowControl must be a boolean, got ${String(out.flowControl)}`);
  }
  if (out.initialWindow < EXTENSION_INITIAL_WINDOW || out.initialWindow > 0x7fff_ffff) {
    throw new InvalidArgumentError(
      `option initialWindow must be between ${EXTENSION_INITIAL_WINDOW} and 2^31-1, got ${out.initialWindow}`,
    );
  }
  if (out.maxWindow < out.initialWindow || out.maxWindow > 0x7fff_ffff) {
    throw new InvalidArgumentError(
      `option maxWindow must be between initialWindow and 2^31-1, got ${out.maxWindow}`,
    );
  }
  if (out.maxStreamPayload > out.maxPacketLength - 8) {
    throw new InvalidArgumentError('option maxStreamPayload must be smaller than maxPacketLength - 8');
  }
  return out;
}

/** The heartbeat code a client declares for an interval: the smallest expressible interval at or above it. */
export function heartbeatCode(intervalMs: number): number {
  const code = HEARTBEAT_INTERVALS_MS.findIndex((ms) => ms >= intervalMs);
  return code === -1 ? 3 : code;
}

/** Converts meta given as string or bytes to bytes. */
export function toBuffer(value: string | Uint8Array | undefined): Buffer | undefined {
  if (value === undefined) return undefined;
  if (typeof value === 'string') return Buffer.from(value);
  return Buffer.isBuffer(value) ? value : Buffer.from(value.buffer, value.byteOffset, value.byteLength);
}
