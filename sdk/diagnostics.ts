/**
 * What the SDK tells observers, on `node:diagnostics_channel` (the way undici does): a sidecar, an APM agent or a
 * test subscribes by name and never reaches into a Connection or a Stream. Publishing costs one `hasSubscribers`
 * check while nobody listens.
 *
 * Every message names the public object it is about (an End, a Stream), so a subscriber can keep its own
 * per-object state in a WeakMap. Byte events are per chunk; the close event carries the totals, so a subscriber
 * that started listening late (or attached its labels after the stream opened) can reconcile.
 */
import type { Stream } from './channel/stream.js';
import type { End } from './end.js';

export { CHANNELS } from './diag.js';

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
