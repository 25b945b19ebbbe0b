/**
 * What the SDK tells observers, on `node:diagnostics_channel` (the way undici does): a sidecar, an APM agent or a
 * test subscribes by name and never reaches into a Connection or a Stream. Publishing costs one `hasSubscribers`
 * check while nobody listens.
 *
 * Every message names the public object it is about (an End, a Stream), so a subscriber can keep its own
 * per-object state in a WeakMap. Byte events are per chunk; the close event carries the totals, so a subscriber
 * that started listening late (or attached its labels after the stream opened) can reconcile.
 */
import diagnostics from 'node:diagnostics_channel';
import type { Stream } from './channel/stream.js';
import type { End } from './end.js';

/** The channel names, stable across releases. */
export const CHANNELS = {
  /** A connection finished its handshake (client and server side). */
  connectionOpen: 'geminio:connection:open',
  /** A connection closed, cleanly (`error` undefined) or not. */
  connectionClose: 'geminio:connection:close',
  /** A TLS or geminio handshake failed or timed out; the socket has been destroyed. */
  handshakeError: 'geminio:connection:handshakeError',
  /** A reconnecting client End lost its connection and will redial after `delayMs`. */
  endReconnecting: 'geminio:end:reconnecting',
  /** A reconnecting client End is connected again. */
  endReconnect: 'geminio:end:reconnect',
  /** A stream was opened by this side ('local') or accepted from the peer ('remote'). */
  streamOpen: 'geminio:stream:open',
  /** A stream finalized (Dismiss exchange over, abandoned, or its connection lost). */
  streamClose: 'geminio:stream:close',
  /** Payload bytes received from the peer on a stream (handed to the readable side). */
  streamBytesIn: 'geminio:stream:bytesIn',
  /** Payload bytes sent to the peer on a stream (framed onto the connection). */
  streamBytesOut: 'geminio:stream:bytesOut',
} as const;

export type Role = 'client' | 'server';

/** Why a handshake failed. */
export type HandshakeFailure =
  | 'tls' // the TLS handshake failed (bad certificate, protocol error)
  | 'timeout' // the TLS or geminio handshake did not finish in time
  | 'protocol' // the first frames were not a valid Conn / ConnAck
  | 'rejected' // the server (its onConnect hook) refused the client
  | 'limit' // a pre-handshake limit was hit (frame size, handshake budget)
  | 'closed'; // the peer closed the socket during the handshake

export interface ConnectionOpenMessage {
  end: End;
  role: Role;
  clientId: bigint;
  remoteAddress: string | undefined;
  /** True for a reconnect of an End that already existed. */
  resumed: boolean;
}

export interface ConnectionCloseMessage {
  end: End;
  role: Role;
  clientId: bigint;
  error: Error | undefined;
}

export interface HandshakeErrorMessage {
  role: Role;
  remoteAddress: string | undefined;
  reason: HandshakeFailure;
  error: Error;
}

export interface EndReconnectingMessage {
  end: End;
  clientId: bigint;
  /** 1 for the first redial after a loss. */
  attempt: number;
  delayMs: number;
  error: Error | undefined;
}

export interface EndReconnectMessage {
  end: End;
  clientId: bigint;
  /** Redials it took. */
  attempts: number;
}

export interface StreamOpenMessage {
  stream: Stream;
  end: End;
  clientId: bigint;
  streamId: bigint;
  origin: 'local' | 'remote';
}

export interface StreamCloseMessage {
  stream: Stream;
  end: End;
  clientId: bigint;
  streamId: bigint;
  /** Total payload bytes received from / sent to the peer over the stream's life. */
  bytesIn: number;
  bytesOut: number;
  error: Error | undefined;
}

export interface StreamBytesMessage {
  stream: Stream;
  bytes: number;
}

/** @internal The channels the SDK publishes on. */
export const channels = {
  connectionOpen: diagnostics.channel(CHANNELS.connectionOpen),
  connectionClose: diagnostics.channel(CHANNELS.connectionClose),
  handshakeError: diagnostics.channel(CHANNELS.handshakeError),
  endReconnecting: diagnostics.channel(CHANNELS.endReconnecting),
  endReconnect: diagnostics.channel(CHANNELS.endReconnect),
  streamOpen: diagnostics.channel(CHANNELS.streamOpen),
  streamClose: diagnostics.channel(CHANNELS.streamClose),
  streamBytesIn: diagnostics.channel(CHANNELS.streamBytesIn),
  streamBytesOut: diagnostics.channel(CHANNELS.streamBytesOut),
};
