import { InvalidArgumentError } from './errors.js';

/** How a client End redials after its connection drops. */
export interface ReconnectPolicy {
  /** First delay, ms. Default 100. */
  minDelay: number;
  /** Largest delay, ms; the delay doubles per attempt up to this. Default 5000. */
  maxDelay: number;
  /** Random spread as a fraction of the delay (0.2 = +/-20%), so many clients do not redial in step. Default 0.2. */
  jitter: number;
  /** Attempts per outage before the End closes for good. Default Infinity. */
  maxAttempts: number;
  /** Calls, publishes and opens made while reconnecting fail at once instead of waiting. Default false. */
  failFast: boolean;
}

export type ReconnectOption = boolean | Partial<ReconnectPolicy> | undefined;

export const defaultReconnectPolicy: Readonly<ReconnectPolicy> = Object.freeze({
  minDelay: 100,
  maxDelay: 5000,
  jitter: 0.2,
  maxAttempts: Number.POSITIVE_INFINITY,
  failFast: false,
});

/** The policy for a `reconnect` option, or undefined when reconnecting is off. Names the bad key on error. */
export function resolveReconnect(option: ReconnectOption): ReconnectPolicy | undefined {
  if (!option) return undefined;
  const p: ReconnectPolicy = { ...defaultReconnectPolicy, ...(option === true ? {} : option) };
  for (const key of ['minDelay', 'maxDelay', 'maxAttempts'] as const) {
    if (!(typeof p[key] === 'number' && p[key] > 0)) {
      throw new InvalidArgumentError(
        `option reconnect.${key} must be a positive number, got ${String(p[key])}`,
      );
    }
  }
  if (!(p.jitter >= 0 && p.jitter <= 1)) {
    throw new InvalidArgumentError(
      `option reconnect.jitter must be between 0 and 1, got ${String(p.jitter)}`,
    );
  }
  if (p.maxDelay < p.minDelay)
    throw new InvalidArgumentError('option reconnect.maxDelay must be >= minDelay');
  return p;
}

/** Delay before attempt `attempt` (0-based): exponential from minDelay, capped at maxDelay, with jitter. */
export function nextDelay(p: ReconnectPolicy, attempt: number, random: () => number = Math.random): number {
  const base = Math.min(p.maxDelay, p.minDelay * 2 ** Math.min(attempt, 30));
  const spread = base * p.jitter * (random() * 2 - 1);
  return Math.max(0, Math.min(p.maxDelay, Math.round(base + spread)));
}
