/**
 * The diagnostics channels the SDK publishes on (see sdk/diagnostics.ts for the messages). Every layer may
 * publish; this file imports nothing of the SDK. Publish only when `hasSubscribers`: nobody listening costs one
 * property read.
 */
import * as diagnostics from 'node:diagnostics_channel';

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

/** The channels, made once. */
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
