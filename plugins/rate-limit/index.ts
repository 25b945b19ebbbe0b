/**
 * `rate-limit`: a token bucket per ClientID (or per name) for streams, HTTP requests, RPC calls and messages. A
 * bucket holds up to `burst` tokens and refills at `ratePerSecond`; each admission takes one. An empty bucket
 * denies: HTTP gets 429, a stream is reset, a call or a publish gets an error.
 */
import { allow, definePlugin, deny, type EndIdentity, type HookResult } from '../index.js';

export interface BucketOptions {
  ratePerSecond: number;
  /** Most admissions at once after a quiet period. Default: ratePerSecond (at least 1). */
  burst?: number;
}

export interface RateLimitOptions {
  streams?: BucketOptions;
  requests?: BucketOptions;
  calls?: BucketOptions;
  messages?: BucketOptions;
  /** What a bucket belongs to: the End's ClientID (default) or its name (shared by every End of that name). */
  key?: 'clientId' | 'name';
  /** Most buckets kept per kind; the least recently used are dropped first. Default 100000. */
  maxClients?: number;
}

/** A token bucket. Time comes from `now` (milliseconds), so tests can drive it. */
export class TokenBucket {
  private tokens: number;
  private last: number;

  constructor(
    private readonly rate: number,
    private readonly burst: number,
    now: number,
  ) {
    this.tokens = burst;
    this.last = now;
  }

  /** Takes one token if there is one. */
  take(now: number): boolean {
    const elapsed = Math.max(0, now - this.last) / 1000;
    this.last = now;
    this.tokens = Math.min(this.burst, this.tokens + elapsed * this.rate);
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }
}

class Buckets {
  private readonly map = new Map<string, TokenBucket>();

  constructor(
    readonly kind: string,
    private readonly rate: number,
    private readonly burst: number,
    private readonly max: number,
  ) {}

  take(key: string, now: number): boolean {
    let b = this.map.get(key);
    if (b)
      this.map.delete(key); // re-inserted below: Map order is recency
    else b = new TokenBucket(this.rate, this.burst, now);
    this.map.set(key, b);
    if (this.map.size > this.max) this.map.delete(this.map.keys().next().value as string);
    return b.take(now);
  }
}

interface State {
  streams?: Buckets;
  requests?: Buckets;
  calls?: Buckets;
  messages?: Buckets;
  key: 'clientId' | 'name';
  now: () => number;
}

function buckets(kind: string, o: BucketOptions | undefined, max: number): Buckets | undefined {
  if (o === undefined) return undefined;
  if (typeof o.ratePerSecond !== 'number' || !(o.ratePerSecond > 0)) {
    throw new Error(`${kind}.ratePerSecond must be a number above 0`);
  }
  const burst = o.burst ?? Math.max(1, o.ratePerSecond);
  if (typeof burst !== 'number' || !(burst >= 1)) throw new Error(`${kind}.burst must be a number >= 1`);
  return new Buckets(kind, o.ratePerSecond, burst, max);
}

function limit(b: Buckets | undefined, facts: EndIdentity, s: State): HookResult {
  if (!b) return allow();
  const key = s.key === 'name' ? (facts.name ?? `clientId:${facts.clientId}`) : facts.clientId;
  return b.take(key, s.now()) ? allow() : deny(`rate limit of ${b.kind} exceeded`, { status: 429 });
}

export default definePlugin<RateLimitOptions, State>({
  name: 'rate-limit',
  setup(options) {
    const max = options.maxClients ?? 100_000;
    const key = options.key ?? 'clientId';
    if (key !== 'clientId' && key !== 'name')
      throw new Error(`key must be clientId or name, got ${String(key)}`);
    return {
      streams: buckets('streams', options.streams, max),
      requests: buckets('requests', options.requests, max),
      calls: buckets('calls', options.calls, max),
      messages: buckets('messages', options.messages, max),
      key,
      now: () => performance.now(),
    };
  },
  hooks: {
    onStream: (facts, s) => limit(s.streams, facts, s),
    onRequest: (facts, s) => limit(s.requests, facts, s),
    onRpc: (facts, s) => limit(s.calls, facts, s),
    onMessage: (facts, s) => limit(s.messages, facts, s),
  },
});
