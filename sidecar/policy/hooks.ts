/**
 * The hook runner: the one place the data path asks "may this go through?". It is called when an End connects,
 * when a stream is opened or accepted, for each HTTP request, each RPC call and each message. It runs the
 * in-process hooks (tests, embedders), then — for what remote Ends do on the inbound side — the authorization
 * plugins (see authz.ts).
 *
 * Every decision about an inbound End after its connect reads the End's identity record (./identities.ts, the
 * ClientID and name decided when it connected; the inbound listener writes them), and an inbound stream, request,
 * call or message of an End without one is denied. Hooks, plugins and the runner speak one Decision
 * (./decision.ts).
 *
 * Hook points are a closed set, checked when a hook is added. A hook that throws, rejects or takes longer than
 * the timeout denies (fail closed).
 */

import type { Logger } from '../observe/logger.js';
import type { Metrics } from '../observe/metrics.js';
import { type Authz, parseMeta, toX509 } from './authz.js';
import { ALLOW, type Decision, deny, POINTS, type Point, plainDecision } from './decision.js';
import type { Identities, Identity } from './identities.js';

/** The hook points: the policy's points. */
export const HOOK_POINTS = POINTS;
export type HookPoint = Point;

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

export type Hook = (
  point: HookPoint,
  facts: HookFacts,
) => Decision | undefined | Promise<Decision | undefined>;

export class HookRunner {
  private readonly hooks: Hook[] = [];
  private readonly metrics: Metrics;
  private readonly logger: Logger;
  /** The authorization plugins, asked for inbound decisions (none: inbound decisions need only an identity). */
  private readonly authz: Authz | undefined;
  /** Identity records of inbound Ends, written by the inbound listener. */
  private readonly identities: Identities;
  private readonly timeoutMs: number;

  constructor(deps: {
    metrics: Metrics;
    logger: Logger;
    identities: Identities;
    authz?: Authz;
    timeoutMs?: number;
  }) {
    this.metrics = deps.metrics;
    this.logger = deps.logger;
    this.identities = deps.identities;
    this.authz = deps.authz;
    this.timeoutMs = deps.timeoutMs ?? 1000;
  }

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
    const now = this.decideNow(point, facts);
    if (now) return now;
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
    return this.decided(point, facts, decision, by);
  }

  /**
   * decide()'s answer when it needs no waiting: no in-process hook, and for an inbound End no plugin with this
   * point's hook (the decision is then its identity's). Undefined when decide() must run. Counted and logged as
   * decide() is; the per-request paths take it so that a request is not held for a promise and a microtask turn
   * when nothing can make it wait.
   */
  decideNow(point: HookPoint, facts: HookFacts): Decision | undefined {
    if (this.hooks.length > 0 || point === 'connect') return undefined;
    if (facts.direction !== 'inbound') return this.decided(point, facts, ALLOW, 'all');
    if (this.authz?.handles(point)) return undefined;
    const d = identityDecision(facts.identity ?? this.identities.get(facts.clientId ?? ''));
    return this.decided(point, facts, d, d.allow ? 'all' : 'sidecar');
  }

  private decided(point: HookPoint, facts: HookFacts, decision: Decision, by: string): Decision {
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
    // No plugin has this hook: allowed, with the End's name, without building the plugins' facts.
    if (!identity || !this.authz?.handles(point)) return identityDecision(identity);
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
            () => resolve(deny(`hook timed out after ${this.timeoutMs} ms`, 503)),
            this.timeoutMs,
          );
        }),
      ]);
      return d === undefined ? ALLOW : plainDecision(d);
    } catch (err) {
      return deny(`hook failed: ${(err as Error).message}`);
    } finally {
      clearTimeout(timer);
    }
  }
}

/** An inbound End's decision when no plugin decides: allowed with its name, refused when it has no identity. */
function identityDecision(identity: Identity | undefined): Decision {
  return identity ? { allow: true, name: identity.name } : deny('no connect decision for this End', 403);
}
