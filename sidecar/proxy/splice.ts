/**
 * Byte forwarding between a TCP socket and a geminio stream (or any two Duplexes), both ways.
 *
 * Half-close is carried as far as the protocol allows: geminio has no half-close on the wire, but a stream opened
 * or accepted with allowHalfOpen keeps its writable side after the peer's Dismiss. So a FIN from one socket ends
 * the stream (Dismiss), the other side ends its socket (FIN) and may keep answering until it closes too — within
 * the SDK's closeTimeout (5 s by default), after which the Dismiss exchange is abandoned.
 */
import net from 'node:net';
import type { Duplex } from 'node:stream';
import type { Stream } from '../../sdk/index.js';

/**
 * Pipes `a` and `b` into each other. A clean end of either side ends the other; an error or an abort on either
 * destroys both. Calls `onClose` once when both are done.
 */
export function splice(a: Duplex, b: Duplex, onClose?: (err?: Error) => void): void {
  let closed = 0;
  let firstError: Error | undefined;
  const settle = () => {
    if (++closed === 2) onClose?.(firstError);
  };
  const watch = (x: Duplex, other: Duplex) => {
    x.on('error', (err: Error) => {
      firstError ??= err;
      other.destroy();
    });
    x.once('close', () => {
      // A side that closed before both directions finished was aborted: abort the other (never on a clean close,
      // which would drop bytes the other still has to flush).
      if (!x.readableEnded || x.errored) other.destroy();
      settle();
    });
  };
  watch(a, b);
  watch(b, a);
  a.pipe(b);
  b.pipe(a);
}

/** Connects a stream to `tcp://host:port` with half-close and forwards both ways. */
export function forwardToTcp(
  stream: Stream,
  target: { host: string; port: number },
  connectTimeoutMs: number,
  onClose?: (err?: Error) => void,
): void {
  // Keep our writable side after the peer's Dismiss: that is its half-close. (The inbound listener accepts streams
  // for TCP services half-open already, so a Dismiss that came during authorization is not lost; this covers the
  // rest, e.g. the reverse tunnel.)
  stream.allowHalfOpen = true;
  const socket = net.connect({ host: target.host, port: target.port, allowHalfOpen: true });
  socket.setNoDelay(true);
  socket.setTimeout(connectTimeoutMs, () =>
    socket.destroy(new Error(`connect to ${target.host}:${target.port} timed out`)),
  );
  socket.once('connect', () => socket.setTimeout(0));
  splice(socket, stream, onClose);
}

/** Parses `tcp://host:port` or `http://host:port` into its host and port. */
export function targetHostPort(target: string): { host: string; port: number } {
  const u = new URL(target);
  return { host: u.hostname.replace(/^\[|\]$/g, ''), port: Number(u.port) };
}
