/**
 * Reverse tunnels. A sidecar behind NAT dials out (an upstream with `serve: true`) and announces its name; on the
 * inbound side a tunnel listener opens streams back to that client End, chosen by its announced name or its
 * ClientID, and the NAT'd sidecar routes them to its own services. A tunnel is an outbound listener (TCP or HTTP)
 * whose EndSource is a connected client instead of an upstream.
 */
import type { End } from '../../sdk/index.js';
import type { TunnelConfig } from '../config/schema.js';
import { type HttpListenerConfig, HttpOutboundListener, type ListenerDeps } from './http-listener.js';
import { TcpOutboundListener } from './tcp-listener.js';
import type { EndSource } from './upstreams.js';

/**
 * Where connected client Ends are found (the inbound listener, handed in by the composition root: the outbound
 * side never imports the inbound one).
 */
export interface ConnectedEnds {
  find(by: { name?: string; clientId?: string }): End | undefined;
}

/** The client End a tunnel points at, looked up on each connection (it may reconnect with a new End). */
export class ClientEndSource implements EndSource {
  readonly name: string;

  constructor(
    private readonly inbound: () => ConnectedEnds | undefined,
    private readonly by: { name?: string; clientId?: string },
  ) {
    this.name = by.name !== undefined ? `client "${by.name}"` : `client ${by.clientId}`;
  }

  current(): End | undefined {
    return this.inbound()?.find(this.by);
  }
}

/** HTTP tunnels take the outbound listener defaults; the gateway is off (RPC goes client -> server). */
function httpDefaults(t: TunnelConfig): HttpListenerConfig {
  return {
    name: t.name,
    listen: t.listen,
    service: t.service,
    maxStreams: 256,
    keepAliveTimeoutMs: 60_000,
    headersTimeoutMs: 30_000,
    bodyTimeoutMs: 60_000,
    retries: 1,
    rpc: { enabled: false, timeoutMs: 30_000, maxBodyBytes: 0 },
    publish: { enabled: false, timeoutMs: 30_000, maxBodyBytes: 0 },
    tls: { enabled: false, rejectUnauthorized: true, requestCert: false },
  };
}

/** Makes the listener of one tunnel. */
export function createTunnel(
  t: TunnelConfig,
  inbound: () => ConnectedEnds | undefined,
  deps: ListenerDeps,
): HttpOutboundListener | TcpOutboundListener {
  const source = new ClientEndSource(inbound, { name: t.client, clientId: t.clientId });
  if (t.protocol === 'http') return new HttpOutboundListener(httpDefaults(t), source, 'tunnel', deps);
  return new TcpOutboundListener(
    { name: t.name, listen: t.listen, service: t.service },
    source,
    'tunnel',
    deps,
  );
}
