/** Waiting in tests: for time, for an event, for a condition. Every wait is bounded. */

export const delay = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Resolves when `emitter` emits `event`. */
export function once(emitter: NodeJS.EventEmitter, event: string): Promise<unknown[]> {
  return new Promise((resolve) => emitter.once(event, (...args: unknown[]) => resolve(args)));
}

/** Resolves with the event's arguments; rejects after `timeout` ms (and stops listening). */
export function nextEvent(emitter: NodeJS.EventEmitter, event: string, timeout = 5000): Promise<unknown[]> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      emitter.off(event, on);
      reject(new Error(`no '${event}' event within ${timeout} ms`));
    }, timeout);
    const on = (...args: unknown[]) => {
      clearTimeout(timer);
      resolve(args);
    };
    emitter.once(event, on);
  });
}

/**
 * Polls `cond` every `every` ms; resolves with the elapsed ms once it holds, rejects after `timeout` ms naming
 * `what`.
 */
export async function waitUntil(
  cond: () => boolean,
  timeout = 5000,
  what = 'condition',
  every = 5,
): Promise<number> {
  const started = Date.now();
  while (!cond()) {
    if (Date.now() - started > timeout) throw new Error(`${what} not met within ${timeout} ms`);
    await delay(every);
  }
  return Date.now() - started;
}

/**
 * Polls `fn` (sync or async) every 50 ms until it returns a truthy value, and resolves with it; a throw counts as
 * not yet. Rejects after `timeoutMs` naming `what` (with the last error, if it threw).
 */
export async function eventually<T>(
  fn: () => T | Promise<T>,
  timeoutMs = 10_000,
  what = 'condition',
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (err) {
      if (Date.now() > deadline) throw err;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await delay(50);
  }
}
