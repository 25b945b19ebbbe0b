/**
 * The hook runner: the one place the data path asks "may this go through?". It is called when an End connects,
 * when a stream is opened or accepted, for each HTTP request and for each RPC call. Until the plugin system exists
 * no hook is installed and everything is allowed, but every call site is live, counted and tested.
 *
 * Hook points are a closed set, checked when a hook is added. A hook that throws, rejects or takes longer than
 * the timeout denies (fail closed).
 */
import type { Logger } from './logger.js';
import type { Metrics } from './metrics.js';

export const HOOK_POINTS = ['connect', 'stream', 'request', 'rpc'] as const;
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
  direction: 'outbound' | 'inbound' | 'tunnel';
  /** The listener or upstream involved. */
  listener?: string;
}

export type Decision = { allow: true } | { allow: false; status?: number; reason: string };
export type Hook = (
  point: HookPoint,
  facts: HookFacts,
) => Decision | undefined | Promise<Decision | undefined>;

const ALLOW: Decision = { allow: true };

export class HookRunner {
  private readonly hooks: Hook[] = [];

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

  /** Runs every hook in order; the first deny wins. Counted in geminio_hook_decisions_total. */
  async decide(point: HookPoint, facts: HookFacts): Promise<Decision> {
    let decision = ALLOW;
    for (const hook of this.hooks) {
      const d = await this.runOne(hook, point, facts);
      if (!d.allow) {
        decision = d;
        break;
      }
    }
    this.metrics.hookDecisions.inc({ hook: point, decision: decision.allow ? 'allow' : 'deny' });
    if (!decision.allow) {
      this.logger.warn(
        {
          hook: point,
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

  private async runOne(hook: Hook, point: HookPoint, facts: HookFacts): Promise<Decision> {
    let timer: NodeJS.Timeout | undefined;
    try {
      const d = await Promise.race([
        Promise.resolve().then(() => hook(point, facts)),
        new Promise<Decision>((resolve) => {
          timer = setTimeout(
            () => resolve({ allow: false, reason: `hook timed out after ${this.timeoutMs} ms` }),
            this.timeoutMs,
          );
        }),
      ]);
      return d ?? ALLOW;
    } catch (err) {
      return { allow: false, reason: `hook failed: ${(err as Error).message}` };
    } finally {
      clearTimeout(timer);
    }
  }
}
