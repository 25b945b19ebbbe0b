/**
 * The hook runner: the one place the data path asks "may this go through?". It is called when an End connects,
 * when a stream is opened or accepted, for each HTTP request, each RPC call and each message. It runs the
 * in-process hooks (tests, embedders), then — for what remote Ends do on the inbound side — the authorization
 * plugins (see authz.ts).
 *
 * It also keeps the identity of every inbound End: the ClientID and name decided when it connected. Every later
 * decision about that End uses that record, and an inbound stream, request, call or message of an End without
 * one is denied.
 *
 * Hook points are a closed set, checked when a hook is added. A hook that throws, rejects or takes longer than
 * the timeout denies (fail closed).
 */

import type { Logger } from '../observe/logger.js';
import type { Metrics } from '../observe/metrics.js';
import { type Authz, parseMeta, toX509 } from './authz.js';

export const HOOK_POINTS = ['connect', 'stream', 'request', 'rpc', 'message'] as const;
export type HookPoint = (typeof HOOK_POINTS)[number];

/** What a hook sees. ClientID and StreamID are decimal strings (they are 64-bit). */
export interface HookFacts {
  clientId?: string;
  streamId?: string;
  method?: string;
  path?: string;
  headers?: Record<string, string | string[] | undefined>;
  service?: string;
  /** The name a connecting client announced in its meta ({"name": ...}), at connect time. */
  peer?: string;
  /** The connecting client's address, at connect time. */
  remoteAddress?: string;
  /** At connect: the ClientID the client asked for, its meta, its TLS certificate and whether TLS verified it. */
  proposedClientId?: string;
  meta?: Buffer;
  peerCertificate?: unknown;
  peerVerified?: boolean;
  /** The raw stream meta, for streams. */
  streamMeta?: string;
  /** The message topic, for messages. */
  topic?: string;
  direction: 'outbound' | 'inbound' | 'tunnel';
  /** The listener or upstream involved. */
  listener?: string;
  /**
   * The identity of the inbound End this is about, when the caller holds it (the End's message loop: messages it
   * received stay decided by its identity while its queue drains after it closed).
   */
  identity?: Identity;
}

/**
 * An allow may carry what the plugins decided: at connect the End's ClientID and name, for a request headers to
 * add; for inbound decisions `name` is the End's name from its identity record.
 */
export type Decision =
  | { allow: true; clientId?: string; name?: string; headers?: Record<string, string> }
  | { allow: false; status?: number; reason: string; plugin?: string };

/** The identity of an inbound End, decided at connect. */
export interface Identity {
  clientId: string;
  name: string | undefined;
  /** The End holding it, once accepted (until then it is being set up). */
  owner?: object;
}
export type Hook = (
  point: HookPoint,
  facts: HookFacts,
) => Decision | undefined | Promise<Decision | undefined>;

const ALLOW: Decision = { allow: true };

export class HookRunner {
  private readonly hooks: Hook[] = [];
  /** The authorization plugins, asked for inbound decisions (set by the composition root). */
  authz: Authz | undefined;
  /** Identity records of inbound Ends, by ClientID. */
  readonly identities = new Map<string, Identity>();

  constructor(
    private readonly metrics: Metrics,
    private readonly logger: Logger,
    private readonly timeoutMs = 1000,
  ) {}

  /** Adds a hook called for the given points (all by default). */
  add(hook: Hook, points: readonly HookPoint[] = HOOK_POINTS): void {
    for (const p of points) {
      if (!HOOK_POINTS.includes(p))
        throw new Error(`unknown hook point "${p}" (one of ${HOOK_POINTS.join(', ')})`);
    }
    this.hooks.push((point, facts) => (points.includes(point) ? hook(point, facts) : undefined));
  }

  /**
   * Runs every hook in order; the first deny wins. Counted once in geminio_authz_decisions_total, with the
   * direction and who decided: the plugin that denied, "hook" for a programmatic hook, "sidecar" for the
   * sidecar's own refusal, "all" for an allow.
   */
  async decide(point: HookPoint, facts: HookFacts): Promise<Decision> {
    let decision = ALLOW;
    let by = 'all';
    for (const hook of this.hooks) {
      const d = await this.runOne(hook, point, facts);
      if (!d.allow) {
        decision = d;
        by = 'hook';
        break;
      }
    }
    if (decision.allow && facts.direction === 'inbound') {
      decision = await this.authorize(point, facts);
      if (!decision.allow) by = decision.plugin ?? 'sidecar';
    }
    this.metrics.authzDecision(facts.direction, point, by, decision.allow);
    if (!decision.allow) {
      const rid = facts.headers?.['x-request-id'];
      this.logger.warn(
        {
          hook: point,
          plugin: by,
          requestId: typeof rid === 'string' ? rid : undefined,
          clientId: facts.clientId,
          streamId: facts.streamId,
          service: facts.service,
          reason: decision.reason,
        },
        'hook denied',
      );
    }
    return decision;
  }

  /** The plugins' decision about something an inbound End does (or about its connection). */
  private async authorize(point: HookPoint, facts: HookFacts): Promise<Decision> {
    const clientId = facts.clientId ?? '';
    if (point === 'connect') {
      const out = await this.authz?.decide('connect', {
        clientId,
        proposedClientId: facts.proposedClientId,
        name: facts.peer,
        meta: Object.freeze(parseMeta(facts.meta)),
        remoteAddress: facts.remoteAddress,
        peerCertificate: toX509(facts.peerCertificate),
        peerVerified: facts.peerVerified === true && facts.peerCertificate !== undefined,
      });
      return out ?? ALLOW;
    }
    const identity = facts.identity ?? this.identities.get(clientId);
    if (!identity) return { allow: false, status: 403, reason: 'no connect decision for this End' };
    // No plugin has this hook: allowed, with the End's name, without building the plugins' facts.
    if (!this.authz?.handles(point)) return { allow: true, name: identity.name };
    const base = { clientId: identity.clientId, name: identity.name, streamId: facts.streamId ?? '' };
    let out: Decision | undefined;
    switch (point) {
      case 'stream':
        out = await this.authz?.decide('stream', {
          ...base,
          meta: facts.streamMeta ?? '',
          service: facts.service ?? '',
          direction: 'inbound',
        });
        break;
      case 'request':
        out = await this.authz?.decide('request', {
          ...base,
          method: facts.method ?? '',
          path: facts.path ?? '',
          headers: Object.freeze({ ...facts.headers }),
          service: facts.service ?? '',
        });
        break;
      case 'rpc':
        out = await this.authz?.decide('rpc', { ...base, method: facts.method ?? '' });
        break;
      case 'message':
        out = await this.authz?.decide('message', { ...base, topic: facts.topic });
        break;
    }
    if (out && !out.allow) return out;
    return { ...out, allow: true, name: identity.name };
  }

  private async runOne(hook: Hook, point: HookPoint, facts: HookFacts): Promise<Decision> {
    let timer: NodeJS.Timeout | undefined;
    try {
      const d = await Promise.race([
        Promise.resolve().then(() => hook(point, facts)),
        new Promise<Decision>((resolve) => {
          timer = setTimeout(
            () => resolve({ allow: false, status: 503, reason: `hook timed out after ${this.timeoutMs} ms` }),
            this.timeoutMs,
          );
        }),
      ]);
      return d === undefined ? ALLOW : plainDecision(d);
    } catch (err) {
      return { allow: false, reason: `hook failed: ${(err as Error).message}` };
    } finally {
      clearTimeout(timer);
    }
  }
}

/**
 * A hook's answer read once into a plain value (a getter cannot answer one way to the check and another to the
 * caller); anything but `allow === true` denies.
 */
function plainDecision(d: Decision): Decision {
  const raw = d as unknown as Record<string, unknown>;
  if (raw.allow !== true) {
    const status = raw.status;
    const reason = raw.reason;
    return {
      allow: false,
      ...(typeof status === 'number' ? { status } : {}),
      reason: typeof reason === 'string' && reason !== '' ? reason : 'denied',
    };
  }
  const out: Decision & { allow: true } = { allow: true };
  const { clientId, name, headers } = raw;
  if (typeof clientId === 'string') out.clientId = clientId;
  if (typeof name === 'string') out.name = name;
  if (typeof headers === 'object' && headers !== null)
    out.headers = { ...(headers as Record<string, string>) };
  return out;
}
