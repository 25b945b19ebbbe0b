/**
 * The flags of `run`: one table that the yargs command (sidecar/commands.ts) is built from and that the fast path
 * of sidecar/cli.ts reads. The fast path exists for memory: yargs renders and caches the whole help text on every
 * parse (string widths, an `Intl.Segmenter`, ICU data), which made TurboFan compile at startup and cost the idle
 * sidecar about 5 MB of RSS (docs/SIDECAR.md, "Memory"). A plain `run --config FILE [flags]` is parsed here;
 * anything else (help, version, another command, a typo, an unusual form) goes to yargs, which decides as before.
 */
import { ConfigError, type Override } from './load.js';

export interface RunOption {
  describe: string;
  /** The config key the flag overrides (none: `config` names the file, `set` names its own keys). */
  key?: string[];
  alias?: string;
  /** Repeatable (`--set a=1 --set b=2`). */
  array?: boolean;
}

/** The options of `run`, in the order `run --help` lists them. Every one takes a string. */
export const RUN_OPTIONS: Readonly<Record<string, RunOption>> = {
  config: { alias: 'c', describe: 'config file (YAML or JSON); required' },
  'admin-listen': {
    key: ['admin', 'listen'],
    describe: 'admin address host:port (/metrics, /healthz, /readyz)',
  },
  'log-level': { key: ['log', 'level'], describe: 'fatal, error, warn, info, debug, trace or silent' },
  'log-format': { key: ['log', 'format'], describe: 'auto, json or pretty' },
  name: { key: ['name'], describe: 'name announced to upstreams' },
  'grace-period-ms': {
    key: ['shutdown', 'gracePeriodMs'],
    describe: 'how long a shutdown waits for work in flight',
  },
  set: { array: true, describe: 'override any key: --set outbound.http.0.listen=:8081' },
};

/** The overrides the flags of `run` make, as [path, value, source]; a malformed `--set` is a ConfigError. */
export function flagOverrides(argv: Record<string, unknown>): Override[] {
  const out: Override[] = [];
  for (const [flag, option] of Object.entries(RUN_OPTIONS)) {
    const v = argv[flag];
    if (option.key && v !== undefined) out.push([option.key, String(v), `flag --${flag}`]);
  }
  for (const s of (argv.set as string[] | undefined) ?? []) {
    const eq = s.indexOf('=');
    if (eq <= 0) throw new ConfigError([{ path: s, value: s, expected: '--set key.path=value' }], 'flag');
    const key = s.slice(0, eq);
    out.push([key.split('.'), s.slice(eq + 1), `flag --set ${key}`]);
  }
  return out;
}

/**
 * The arguments of a plain `run` (after the node and script paths), as yargs would give them, or undefined for
 * anything this does not recognise exactly: a form yargs reads in its own way (a repeated single-valued flag, a
 * value that starts with `-`, an empty value, a bare word, `--`, camelCase or negated names, short flags but `-c`)
 * and every other command or flag. Undefined means "ask yargs", never "invalid".
 */
export function fastRunArgs(args: readonly string[]): Record<string, string | string[]> | undefined {
  if (args[0] !== 'run') return undefined;
  const out: Record<string, string | string[]> = {};
  const set: string[] = [];
  for (let i = 1; i < args.length; i++) {
    const arg = args[i]!;
    let name: string;
    let value: string | undefined;
    if (arg === '-c') {
      name = 'config';
    } else if (arg.startsWith('--')) {
      const eq = arg.indexOf('=');
      name = eq < 0 ? arg.slice(2) : arg.slice(2, eq);
      if (eq >= 0) value = arg.slice(eq + 1);
    } else {
      return undefined;
    }
    const option = Object.hasOwn(RUN_OPTIONS, name) ? RUN_OPTIONS[name] : undefined;
    if (!option) return undefined;
    if (value === undefined) {
      value = args[++i];
      if (value === undefined || value.startsWith('-')) return undefined;
    }
    if (value === '') return undefined;
    if (option.array) set.push(value);
    else if (Object.hasOwn(out, name)) return undefined;
    else out[name] = value;
  }
  if (out.config === undefined) return undefined;
  if (set.length > 0) out.set = set;
  return out;
}
