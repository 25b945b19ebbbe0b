/**
 * A `tcp://` service: a stream the peer opened is connected to the target with half-close and spliced to it.
 */
import net from 'node:net';
import type { Stream } from '../../sdk/index.js';
import { splice } from '../proxy/splice.js';

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
