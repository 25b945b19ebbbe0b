/**
 * The client side: dial an address (TCP or TLS) or take any connected Duplex, and run the handshake.
 */
import * as net from 'node:net';
import type { Duplex } from 'node:stream';
import * as tls from 'node:tls';
import { type Address, parseAddress } from './address.js';
import { type EndLimits, resolveLimits, toBuffer } from './config.js';
import { Connection } from './connection/connection.js';
import { channels } from './diag.js';
import type { HandshakeErrorMessage } from './diagnostics.js';
import { End, type SetupOptions } from './end.js';
import { ConnectionClosedError, type GeminioError } from './errors.js';
import { type ReconnectOption, resolveReconnect } from './reconnect.js';

export interface DialOptions extends Partial<EndLimits>, SetupOptions {
  /** Meta sent in Conn; the server sees it as `end.meta`. Read on every (re)connect of this options object. */
  meta?: string | Uint8Array;
  /** A ClientID to ask for. The server decides; a geminio-node server ignores it unless its hook approves it. */
  clientId?: bigint;
  /**
   * Dial with TLS using these options (servername, ca, cert, key, rejectUnauthorized, ...). Like `meta`, read on
   * every reconnect: replacing it on this options object (a rotated certificate) applies to the next connection.
   */
  tls?: tls.ConnectionOptions;
  /**
   * Redial when the connection drops: `true` for the defaults, or { minDelay, maxDelay, jitter, maxAttempts,
   * failFast }. The first dial must succeed (as in Go); later outages are retried with exponential backoff.
   */
  reconnect?: ReconnectOption;
}

/**
 * Connects to a geminio server, completes the handshake and the setup (registerLocalRpcs, waitRemoteRpcs).
 */
export async function dial(address: Address, options: DialOptions = {}): Promise<End> {
  const limits = resolveLimits(options);
  const policy = resolveReconnect(options.reconnect);
  const { host, port } = parseAddress(address);
  const connect = async (previous: Connection | undefined): Promise<Connection> => {
    const socket = await connectSocket(host, port, options.tls, limits.handshakeTimeout);
    // After a drop: ask for the same ClientID, with the server's resume secret if it gave one.
    return handshake(socket, limits, options, previous?.clientId ?? options.clientId, previous);
  };
  const conn = await connect(undefined);
  const end = new End(conn, { redial: policy ? connect : undefined, reconnect: policy, setup: options });
  return setUp(end);
}

/** Runs the client handshake over an already connected Duplex (a socket, a TLS socket, an in-memory pair). */
export async function clientEnd(
  transport: Duplex,
  options: Omit<DialOptions, 'reconnect' | 'tls'> = {},
): Promise<End> {
  const conn = await handshake(transport, resolveLimits(options), options, options.clientId, undefined);
  return setUp(new End(conn, { setup: options }));
}

async function handshake(
  transport: Duplex,
  limits: EndLimits,
  options: DialOptions,
  clientId: bigint | undefined,
  previous: Connection | undefined,
): Promise<Connection> {
  const conn = new Connection({
    role: 'client',
    transport,
    limits,
    meta: toBuffer(options.meta),
    clientId,
    ids: previous?.ids,
    resumeToken: previous?.resumeToken,
  });
  await conn.start();
  return conn;
}

async function setUp(end: End): Promise<End> {
  try {
    await end.setup();
    return end;
  } catch (err) {
    end.destroy();
    throw err;
  }
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
    // With TLS, a failure after the TCP connect is a failed TLS handshake (reported to diagnostics).
    let tcpConnected = false;
    if (tlsOptions) socket.once('connect', () => (tcpConnected = true));
    const timer = setTimeout(
      () => fail(new ConnectionClosedError(`connect to ${host}:${port} timed out`), 'timeout'),
      timeout,
    );
    const fail = (err: GeminioError, reason: 'tls' | 'timeout' = 'tls') => {
      clearTimeout(timer);
      socket.destroy();
      if (tcpConnected && channels.handshakeError.hasSubscribers) {
        channels.handshakeError.publish({
          role: 'client',
          remoteAddress: `${host}:${port}`,
          reason,
          error: err,
        } satisfies HandshakeErrorMessage);
      }
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
