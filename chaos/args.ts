/**
 * Argument and command parsing for the chaos CLI, kept apart from cli.ts so it can be unit tested
 * without spawning a process.
 */
import { parseArgs } from 'node:util';
import { type CorruptOptions, type Direction, type Faults, forDirection } from './faults.js';
import type { HostPort } from './proxy.js';

/** A bad command line; the CLI prints the message and exits with status 2. */
export class UsageError extends Error {
  override name = 'UsageError';
}

export const USAGE = `Usage: chaos --target HOST:PORT [options]

A fault-injecting TCP proxy for loopback resilience tests.

Options:
  --listen HOST:PORT            where to listen (default 127.0.0.1:0, a free port)
  --target HOST:PORT            where to forward connections (required)
  --delay MS                    hold each chunk MS milliseconds before forwarding it
  --throttle BPS                limit each connection to BPS bytes per second per direction
  --split N                     forward data in writes of at most N bytes
  --corrupt-probability P       flip a bit in each byte with probability P (0..1)
  --corrupt-every N             flip a bit in every Nth byte
  --corrupt-seed SEED           seed of the corruption generator (integer)
  --blackhole                   forward nothing, keep connections open
  --refuse                      accept and immediately close new connections
  --direction up|down|both      direction the faults above apply to (default both)
  -h, --help                    print this help

Commands on stdin, one per line ([DIR] is up, down or both; default --direction):
  kill                          end every connection with a FIN
  reset                         reset every connection (RST)
  blackhole on|off [DIR]
  refuse on|off
  delay MS [DIR]
  throttle BPS [DIR]            0 turns it off
  split N [DIR]                 0 turns it off
  corrupt P [DIR]               0 turns corruption off; keeps --corrupt-seed and --corrupt-every
  stats                         print counters as JSON
  faults                        print the current faults as JSON
  quit                          close the proxy and exit
`;

/** Parsed command line. */
export interface CliConfig {
  listen: HostPort;
  target: HostPort;
  direction: Direction;
  faults: Faults;
  /** Seed and every-Nth setting kept for the `corrupt P` command. */
  corruptBase: CorruptOptions;
}

type Check<T> = (raw: string) => T | undefined;

const nonNegative: Check<number> = (raw) => {
  const n = Number(raw);
  return raw.trim() !== '' && Number.isFinite(n) && n >= 0 ? n : undefined;
};
const positive: Check<number> = (raw) => {
  const n = nonNegative(raw);
  return n !== undefined && n > 0 ? n : undefined;
};
const nonNegativeInt: Check<number> = (raw) => {
  const n = nonNegative(raw);
  return n !== undefined && Number.isInteger(n) ? n : undefined;
};
const positiveInt: Check<number> = (raw) => {
  const n = nonNegativeInt(raw);
  return n !== undefined && n > 0 ? n : undefined;
};
const probability: Check<number> = (raw) => {
  const n = nonNegative(raw);
  return n !== undefined && n <= 1 ? n : undefined;
};
const integer: Check<number> = (raw) => {
  const n = Number(raw);
  return raw.trim() !== '' && Number.isSafeInteger(n) ? n : undefined;
};
const direction: Check<Direction> = (raw) =>
  raw === 'up' || raw === 'down' || raw === 'both' ? raw : undefined;
const onOff: Check<boolean> = (raw) => (raw === 'on' ? true : raw === 'off' ? false : undefined);

function hostPort(allowZero: boolean): Check<HostPort> {
  return (raw) => {
    // Accepts "PORT", "HOST:PORT", ":PORT" and "[IPv6]:PORT".
    const m = /^(?:\[([^\]]+)\]|([^:[\]]*)):(\d+)$/.exec(raw) ?? /^()()(\d+)$/.exec(raw);
    if (!m) return undefined;
    const port = Number(m[3]);
    if (!Number.isInteger(port) || port > 65535 || (port === 0 && !allowZero)) return undefined;
    return { host: m[1] || m[2] || '127.0.0.1', port };
  };
}

function check<T>(what: string, raw: string, fn: Check<T>, expected: string): T {
  const v = fn(raw);
  if (v === undefined)
    throw new UsageError(`invalid value for ${what}: ${JSON.stringify(raw)} (expected ${expected})`);
  return v;
}

/**
 * Parses the CLI arguments (without the node and script paths).
 * @returns `null` when `--help` was given
 * @throws UsageError on unknown flags, missing `--target` or invalid values
 */
export function parseCliArgs(argv: string[]): CliConfig | null {
  let values: ReturnType<typeof parse>['values'];
  try {
    values = parse(argv).values;
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  if (values.help) return null;
  if (values.target === undefined) throw new UsageError('--target is required');
  const dir =
    values.direction === undefined
      ? 'both'
      : check('--direction', values.direction, direction, 'up, down or both');
  const target = check('--target', values.target, hostPort(false), 'HOST:PORT with a port from 1 to 65535');
  const listen =
    values.listen === undefined
      ? { host: '127.0.0.1', port: 0 }
      : check('--listen', values.listen, hostPort(true), 'HOST:PORT with a port from 0 to 65535');

  const faults: Faults = {};
  if (values.delay !== undefined) {
    faults.delayMs = forDirection(dir, check('--delay', values.delay, nonNegative, 'milliseconds >= 0'));
  }
  if (values.throttle !== undefined) {
    const bps = check('--throttle', values.throttle, positive, 'bytes per second > 0');
    faults.throttleBytesPerSec = forDirection(dir, bps);
  }
  if (values.split !== undefined) {
    faults.splitMaxBytes = forDirection(dir, check('--split', values.split, positiveInt, 'an integer >= 1'));
  }
  const corruptBase: CorruptOptions = {};
  if (values['corrupt-seed'] !== undefined) {
    corruptBase.seed = check('--corrupt-seed', values['corrupt-seed'], integer, 'an integer');
  }
  if (values['corrupt-every'] !== undefined) {
    corruptBase.everyNthByte = check(
      '--corrupt-every',
      values['corrupt-every'],
      positiveInt,
      'an integer >= 1',
    );
  }
  let corrupt: CorruptOptions | null = corruptBase.everyNthByte ? { ...corruptBase } : null;
  if (values['corrupt-probability'] !== undefined) {
    const p = check(
      '--corrupt-probability',
      values['corrupt-probability'],
      probability,
      'a number from 0 to 1',
    );
    corrupt = { ...corruptBase, probability: p };
  }
  if (corrupt) faults.corrupt = forDirection(dir, corrupt);
  if (values.blackhole) faults.blackhole = forDirection(dir, true);
  if (values.refuse) faults.refuse = true;
  return { listen, target, direction: dir, faults, corruptBase };
}

function parse(argv: string[]) {
  return parseArgs({
    args: argv,
    strict: true,
    allowPositionals: false,
    options: {
      listen: { type: 'string' },
      target: { type: 'string' },
      delay: { type: 'string' },
      throttle: { type: 'string' },
      split: { type: 'string' },
      'corrupt-probability': { type: 'string' },
      'corrupt-every': { type: 'string' },
      'corrupt-seed': { type: 'string' },
      blackhole: { type: 'boolean' },
      refuse: { type: 'boolean' },
      direction: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
}

/** A parsed stdin command. */
export type Command =
  | { kind: 'kill' | 'reset' | 'stats' | 'faults' | 'quit' | 'help' }
  | { kind: 'set'; faults: Faults; description: string };

/**
 * Parses one stdin command line.
 * @returns `null` for a blank line
 * @throws UsageError for an unknown command or a bad argument
 */
export function parseCommand(
  line: string,
  defaults: Pick<CliConfig, 'direction' | 'corruptBase'>,
): Command | null {
  const [name, ...args] = line.trim().split(/\s+/).filter(Boolean);
  if (name === undefined) return null;
  const arity = (min: number, max: number) => {
    if (args.length < min || args.length > max) {
      throw new UsageError(
        `${name}: expected ${min === max ? min : `${min} to ${max}`} argument(s), got ${args.length}`,
      );
    }
  };
  const dirArg = (i: number): Direction =>
    args[i] === undefined
      ? defaults.direction
      : check(`${name} direction`, args[i], direction, 'up, down or both');
  const arg = (i: number) => args[i] ?? '';
  const describe = (dir: Direction) => `${[name, ...args.slice(0, 1)].join(' ')} (${dir})`;

  switch (name) {
    case 'kill':
    case 'reset':
    case 'stats':
    case 'faults':
    case 'quit':
    case 'help':
      arity(0, 0);
      return { kind: name };
    case 'refuse': {
      arity(1, 1);
      return {
        kind: 'set',
        faults: { refuse: check('refuse', arg(0), onOff, 'on or off') },
        description: `refuse ${arg(0)}`,
      };
    }
    case 'blackhole': {
      arity(1, 2);
      const on = check('blackhole', arg(0), onOff, 'on or off');
      const dir = dirArg(1);
      return { kind: 'set', faults: { blackhole: forDirection(dir, on) }, description: describe(dir) };
    }
    case 'delay': {
      arity(1, 2);
      const ms = check('delay', arg(0), nonNegative, 'milliseconds >= 0');
      const dir = dirArg(1);
      return { kind: 'set', faults: { delayMs: forDirection(dir, ms) }, description: describe(dir) };
    }
    case 'throttle': {
      arity(1, 2);
      const bps = check('throttle', arg(0), nonNegative, 'bytes per second >= 0');
      const dir = dirArg(1);
      return {
        kind: 'set',
        faults: { throttleBytesPerSec: forDirection(dir, bps) },
        description: describe(dir),
      };
    }
    case 'split': {
      arity(1, 2);
      const n = check('split', arg(0), nonNegativeInt, 'an integer >= 0');
      const dir = dirArg(1);
      return { kind: 'set', faults: { splitMaxBytes: forDirection(dir, n) }, description: describe(dir) };
    }
    case 'corrupt': {
      arity(1, 2);
      const p = check('corrupt', arg(0), probability, 'a number from 0 to 1');
      const dir = dirArg(1);
      const base = defaults.corruptBase;
      const value: CorruptOptions | null = p > 0 ? { ...base, probability: p } : null;
      return { kind: 'set', faults: { corrupt: forDirection(dir, value) }, description: describe(dir) };
    }
    default:
      throw new UsageError(`unknown command ${JSON.stringify(name)} (try "help")`);
  }
}
