/**
 * The client side: dial an address (TCP or TLS) or take any connected Duplex, and run the handshake.
 */
import net from 'node:net';
import type { Duplex } from 'node:stream';
import tls from 'node:tls';
import { type Address, parseAddress } from './address.js';
import { type EndLimits, resolveLimits, toBuffer } from './config.js';
import { Connection } from './connection/connection.js';
import { End } from './end.js';
import { ConnectionClosedError, type GeminioError } from './errors.js';

export interface DialOptions extends Partial<EndLimits> {
  /** Meta sent in Conn; the server sees it as `end.meta`. */
  meta?: string | Uint8Array;
  /** A ClientID to ask for. The server decides; a geminio-node server ignores it unless its hook approves it. */
  clientId?: bigint;
  /** Dial with TLS using these options (servername, ca, cert, key, rejectUnauthorized, ...). */
  tls?: tls.ConnectionOptions;
}

/** Connects to a geminio server and completes the handshake. */
export async function dial(address: Address, options: DialOptions = {}): Promise<End> {
  const limits = resolveLimits(options);
  const { host, port } = parseAddress(address);
  const socket = await connectSocket(host, port, options.tls, limits.handshakeTimeout);
  return clientEnd(socket, options);
}

/** Runs the client handshake over an already connected Duplex (a socket, a TLS socket, an in-memory pair). */
export async function clientEnd(transport: Duplex, options: DialOptions = {}): Promise<End> {
  const limits = resolveLimits(options);
  const conn = new Connection({
    role: 'client',
    transport,
    limits,
    meta: toBuffer(options.meta),
    clientId: options.clientId,
  });
  await conn.start();
  return new End(conn);
}

function connectSocket(
  host: string,
  port: number,
  tlsOptions: tls.ConnectionOptions | undefined,
  timeout: number,
): Promise<Duplex> {
  return new Promise((resolve, reject) => {
    const socket = tlsOptions
      ? tls.connect({ servername: net.isIP(host) ? undefined : host, ...tlsOptions, host, port })
      : net.connect({ host, port });
    socket.setNoDelay?.(true);
    const timer = setTimeout(
      () => fail(new ConnectionClosedError(`connect to ${host}:${port} timed out`)),
      timeout,
    );
    const fail = (err: GeminioError) => {
      clearTimeout(timer);
      socket.destroy();
      reject(err);
    };
    socket.once('error', (err) =>
      fail(new ConnectionClosedError(`connect to ${host}:${port} failed: ${err.message}`, { cause: err })),
    );
    socket.once(tlsOptions ? 'secureConnect' : 'connect', () => {
      clearTimeout(timer);
      socket.removeAllListeners('error');
      resolve(socket);
    });
  });
}
