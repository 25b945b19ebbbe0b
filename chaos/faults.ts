/**
 * Fault settings for {@link ChaosProxy}: public types, validation, and the per-direction view the
 * forwarding code reads on every chunk.
 */

/** Which way bytes travel: `'up'` is client → target, `'down'` is target → client. */
export type Flow = 'up' | 'down';

/** A direction selector for settings: one flow or `'both'`. */
export type Direction = Flow | 'both';

/**
 * A setting that applies to both directions (a plain value) or to each direction separately.
 * When passed to `setFaults`, a direction left out of the object keeps its current value.
 */
export type PerDirection<T> = T | { up?: T; down?: T };

/** Bit-flip corruption of forwarded bytes. Either trigger alone is enough to corrupt a byte. */
export interface CorruptOptions {
  /** Chance in [0, 1] that any given byte has one bit flipped. */
  probability?: number;
  /** Flip one bit in every Nth byte of the direction's stream (N >= 1), counted per connection. */
  everyNthByte?: number;
  /**
   * Seed of the pseudo-random generator. Each connection and direction starts its own generator from
   * this seed, so the same byte stream is corrupted the same way on every run. Random when omitted.
   */
  seed?: number;
}

/**
 * Faults a {@link ChaosProxy} applies. Zero, `false` and `null` turn a fault off. Every fault except
 * `refuse` can be given per direction (see {@link PerDirection}).
 */
export interface Faults {
  /** Hold every chunk this long (milliseconds, measured from its arrival) before forwarding it. */
  delayMs?: PerDirection<number>;
  /** Token-bucket rate limit in bytes per second, per connection and direction. */
  throttleBytesPerSec?: PerDirection<number>;
  /** Forward each chunk as separate writes of at most this many bytes, a macrotask apart. */
  splitMaxBytes?: PerDirection<number>;
  /** Flip bits in forwarded bytes. */
  corrupt?: PerDirection<CorruptOptions | null>;
  /** Drop every byte (connections stay open, end-of-stream is held back until it is turned off). */
  blackhole?: PerDirection<boolean>;
  /** Accept new connections and destroy them at once, as if the server behind the proxy were down. */
  refuse?: boolean;
}

/** Resolved settings of one direction. */
export interface FlowFaults {
  delayMs: number;
  throttleBytesPerSec: number;
  splitMaxBytes: number;
  corrupt: CorruptOptions | null;
  /** Bumped whenever `corrupt` is set, so running connections restart their generator from the seed. */
  corruptGeneration: number;
  blackhole: boolean;
}

/** Resolved settings of a proxy. */
export interface ResolvedFaults {
  up: FlowFaults;
  down: FlowFaults;
  refuse: boolean;
}

type FlowKey = 'delayMs' | 'throttleBytesPerSec' | 'splitMaxBytes' | 'corrupt' | 'blackhole';
const FLOW_KEYS: readonly FlowKey[] = [
  'delayMs',
  'throttleBytesPerSec',
  'splitMaxBytes',
  'corrupt',
  'blackhole',
];

/** Settings with every fault off. */
export function noFaults(): ResolvedFaults {
  const flow = (): FlowFaults => ({
    delayMs: 0,
    throttleBytesPerSec: 0,
    splitMaxBytes: 0,
    corrupt: null,
    corruptGeneration: 0,
    blackhole: false,
  });
  return { up: flow(), down: flow(), refuse: false };
}

/**
 * Builds a {@link PerDirection} value that sets only `direction`, e.g. for the CLI's `--direction`.
 * @example proxy.setFaults({ delayMs: forDirection('down', 50) })
 */
export function forDirection<T>(direction: Direction, value: T): PerDirection<T> {
  return direction === 'both' ? value : ({ [direction]: value } as { up?: T; down?: T });
}

function isPerDirectionObject<T>(v: PerDirection<T>): v is { up?: T; down?: T } {
  // CorruptOptions is also an object, so the `up`/`down` keys are what tells the two apart.
  return typeof v === 'object' && v !== null && ('up' in v || 'down' in v);
}

function checkNumber(
  name: string,
  v: unknown,
  opts: { min: number; max?: number; integer?: boolean },
): number {
  if (v === undefined || v === null) return 0;
  if (
    typeof v !== 'number' ||
    !Number.isFinite(v) ||
    v < opts.min ||
    (opts.max !== undefined && v > opts.max) ||
    (opts.integer && !Number.isInteger(v))
  ) {
    const range = opts.max !== undefined ? `between ${opts.min} and ${opts.max}` : `>= ${opts.min}`;
    throw new RangeError(
      `${name} must be ${opts.integer ? 'an integer' : 'a number'} ${range}, got ${String(v)}`,
    );
  }
  return v;
}

function checkCorrupt(v: unknown): CorruptOptions | null {
  if (v === undefined || v === null || v === false) return null;
  if (typeof v !== 'object') throw new TypeError(`corrupt must be an object or null, got ${String(v)}`);
  const o = v as CorruptOptions;
  const out: CorruptOptions = {};
  if (o.probability !== undefined) {
    out.probability = checkNumber('corrupt.probability', o.probability, { min: 0, max: 1 });
  }
  if (o.everyNthByte !== undefined) {
    out.everyNthByte = checkNumber('corrupt.everyNthByte', o.everyNthByte, { min: 1, integer: true });
  }
  if (o.seed !== undefined) {
    out.seed = checkNumber('corrupt.seed', o.seed, { min: -(2 ** 53), integer: true });
  }
  // A config that can never fire is the same as no corruption; normalising keeps the hot path cheap.
  return out.probability || out.everyNthByte ? out : null;
}

function checkFlowValue(key: FlowKey, v: unknown): FlowFaults[FlowKey] {
  switch (key) {
    case 'delayMs':
      return checkNumber(key, v, { min: 0 });
    case 'throttleBytesPerSec':
      return checkNumber(key, v, { min: 0 });
    case 'splitMaxBytes':
      return checkNumber(key, v, { min: 0, integer: true });
    case 'corrupt':
      return checkCorrupt(v);
    case 'blackhole':
      if (v !== undefined && v !== null && typeof v !== 'boolean') {
        throw new TypeError(`blackhole must be a boolean, got ${String(v)}`);
      }
      return v === true;
  }
}

/**
 * Returns a copy of `current` with `partial` applied. Keys absent from `partial` are kept; a key that
 * is present (even as `undefined`) replaces the setting, or only the directions it names.
 * Throws (and changes nothing) when any value is invalid.
 */
export function applyFaults(current: ResolvedFaults, partial: Faults): ResolvedFaults {
  const next: ResolvedFaults = { up: { ...current.up }, down: { ...current.down }, refuse: current.refuse };
  for (const key of FLOW_KEYS) {
    if (!(key in partial)) continue;
    const raw = partial[key] as PerDirection<unknown>;
    const perFlow: { up?: unknown; down?: unknown } = isPerDirectionObject(raw)
      ? raw
      : { up: raw, down: raw };
    for (const flow of ['up', 'down'] as const) {
      if (!(flow in perFlow)) continue;
      const value = checkFlowValue(key, perFlow[flow]);
      (next[flow] as unknown as Record<FlowKey, unknown>)[key] = value;
      if (key === 'corrupt') next[flow].corruptGeneration = current[flow].corruptGeneration + 1;
    }
  }
  if ('refuse' in partial) {
    const r = partial.refuse;
    if (r !== undefined && typeof r !== 'boolean')
      throw new TypeError(`refuse must be a boolean, got ${String(r)}`);
    next.refuse = r === true;
  }
  return next;
}

/**
 * The public view of resolved settings: every key present, a plain value when both directions agree
 * and `{ up, down }` when they differ.
 */
export function describeFaults(f: ResolvedFaults): Required<Faults> {
  const pick = <K extends FlowKey>(key: K): PerDirection<FlowFaults[K]> => {
    const up = f.up[key];
    const down = f.down[key];
    return JSON.stringify(up) === JSON.stringify(down) ? up : { up, down };
  };
  return {
    delayMs: pick('delayMs'),
    throttleBytesPerSec: pick('throttleBytesPerSec'),
    splitMaxBytes: pick('splitMaxBytes'),
    corrupt: pick('corrupt'),
    blackhole: pick('blackhole'),
    refuse: f.refuse,
  };
}

/**
 * xorshift32: tiny, fast and deterministic, which is all fault injection needs (not for cryptography).
 */
export class XorShift32 {
  private state: number;

  constructor(seed: number) {
    // Mix the seed so small seeds (0, 1, 2…) still give unrelated streams; xorshift must not start at 0.
    let s = (Math.imul(seed | 0, 0x9e3779b1) ^ Math.floor(seed / 2 ** 32) ^ 0x6d2b79f5) >>> 0;
    s ^= s >>> 16;
    this.state = s === 0 ? 0x1234567 : s;
  }

  /** Next value in [0, 2^32). */
  next(): number {
    let x = this.state;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.state = x >>> 0;
    return this.state;
  }

  /** Next value in [0, 1). */
  nextFloat(): number {
    return this.next() / 2 ** 32;
  }
}
