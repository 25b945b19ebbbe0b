/**
 * The one decision vocabulary of the sidecar's policy. In-process hooks (./hooks.ts), the authorization plugins
 * (./authz.ts, whose allow()/deny() come from ../../plugins/index.ts) and the sidecar's own rules all answer "may
 * this go through?" with a `Decision`, about one of the same five `Point`s.
 */
import type { HookName } from '../../plugins/index.js';

/** Where the data path asks: an End connects, a stream opens, an HTTP request, an RPC call, a message. */
export const POINTS = ['connect', 'stream', 'request', 'rpc', 'message'] as const;
export type Point = (typeof POINTS)[number];

/** The plugin hook asked at each point. */
export const PLUGIN_HOOK = {
  connect: 'onConnect',
  stream: 'onStream',
  request: 'onRequest',
  rpc: 'onRpc',
  message: 'onMessage',
} as const satisfies Record<Point, HookName>;

/**
 * An allow may carry what was decided: at connect the End's ClientID and name, for a request headers to add; for
 * inbound decisions `name` is the End's name from its identity record. A deny carries the reason the client sees
 * and, for HTTP, the status (403 when absent).
 */
export type Decision =
  | { allow: true; clientId?: string; name?: string; headers?: Record<string, string> }
  | {
      allow: false;
      status?: number;
      reason: string /** The plugin that denied (for the decision metric). */;
      plugin?: string;
    };

export const ALLOW: Decision = { allow: true };

/** A deny. */
export function deny(reason: string, status?: number): Decision {
  return status === undefined ? { allow: false, reason } : { allow: false, status, reason };
}

/**
 * Any answer read once into a plain Decision (a getter cannot answer one way to the check and another to the
 * caller; a frozen plugin decision becomes a plain, mutable value); anything but `allow === true` denies.
 */
export function plainDecision(d: Decision): Decision {
  const raw = d as unknown as Record<string, unknown>;
  if (raw.allow !== true) {
    const status = raw.status;
    const reason = raw.reason;
    return deny(
      typeof reason === 'string' && reason !== '' ? reason : 'denied',
      typeof status === 'number' ? status : undefined,
    );
  }
  const out: Decision & { allow: true } = { allow: true };
  const { clientId, name, headers } = raw;
  if (typeof clientId === 'string') out.clientId = clientId;
  if (typeof name === 'string') out.name = name;
  if (typeof headers === 'object' && headers !== null)
    out.headers = { ...(headers as Record<string, string>) };
  return out;
}
