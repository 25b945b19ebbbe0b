/**
 * Byte forwarding between a TCP socket and a geminio stream (or any two Duplexes), both ways: what a TCP
 * outbound listener, a TCP service and an Upgrade (WebSocket) relay share.
 *
 * Half-close is carried as far as the protocol allows: geminio has no half-close on the wire, but a stream opened
 * or accepted with allowHalfOpen keeps its writable side after the peer's Dismiss. So a FIN from one socket ends
 * the stream (Dismiss), the other side ends its socket (FIN) and may keep answering until it closes too — within
 * the SDK's closeTimeout (5 s by default), after which the Dismiss exchange is abandoned.
 */
import type { Duplex } from 'node:stream';

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
