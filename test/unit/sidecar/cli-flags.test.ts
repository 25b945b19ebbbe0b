/**
 * The fast path of `run` (config/flags.ts) against the yargs command line it stands in for (commands.ts): for every
 * argument list it accepts, yargs parses the same config file and the same overrides; what it does not accept goes
 * to yargs, which decides.
 */
import { describe, expect, it } from 'vitest';
import { buildCli } from '../../../sidecar/commands.js';
import { fastRunArgs, flagOverrides } from '../../../sidecar/config/flags.js';

/** What yargs makes of `args`: the run handler's file and overrides, or the failure. */
async function viaYargs(args: string[]): Promise<unknown> {
  let got: unknown = 'no command ran';
  try {
    await buildCli(args, {
      async run(argv) {
        got = { config: argv.config, flags: flagOverrides(argv) };
      },
      async demo() {
        got = 'demo';
      },
      async checkConfig() {
        got = 'check-config';
      },
      fail(err) {
        got = `fail: ${err.message}`;
      },
      usage(text) {
        got = `usage: ${text.split('\n').pop() || text.split('\n').at(-2)}`;
      },
    })
      .exitProcess(false)
      .showHelpOnFail(false)
      .parseAsync();
  } catch (err) {
    got = `threw: ${(err as Error).message}`;
  }
  return got;
}

function viaFast(args: string[]): unknown {
  const fast = fastRunArgs(args);
  if (!fast) return undefined;
  return { config: fast.config, flags: flagOverrides(fast) };
}

const ACCEPTED: string[][] = [
  ['run', '--config', '/etc/geminio-sidecar/sidecar.yaml'],
  ['run', '-c', 'a.yaml'],
  ['run', '--config=a.yaml'],
  ['run', '--config', 'a b.yaml', '--log-level', 'debug'],
  ['run', '--log-level=warn', '--config', 'x.json', '--log-format', 'pretty'],
  ['run', '--config', 'c.yaml', '--admin-listen', '0.0.0.0:9901', '--name', 'web-1'],
  ['run', '--config', 'c.yaml', '--grace-period-ms', '0500', '--name', 'true'],
  ['run', '--config', 'c.yaml', '--set', 'outbound.http.0.listen=:8081'],
  ['run', '--config', 'c.yaml', '--set', 'a.b=1', '--set=c.d=-2', '--set', 'e=[1,2]'],
  ['run', '--config', 'c.yaml', '--name', 'x=y'],
];

const DEFERRED: string[][] = [
  [],
  ['run'],
  ['run', '--help'],
  ['run', '-h'],
  ['--version'],
  ['run', '--config'],
  ['run', '--config', ''],
  ['run', '--config='],
  ['run', '--config', 'a.yaml', '--config', 'b.yaml'],
  ['run', '--config', 'a.yaml', 'extra'],
  ['run', '--config', 'a.yaml', '--set', 'a=1', 'b=2'],
  ['run', '--config', 'a.yaml', '--name', '-x'],
  ['run', '--config', 'a.yaml', '--adminListen', 'x:1'],
  ['run', '--config', 'a.yaml', '--no-name'],
  ['run', '--config', 'a.yaml', '--bogus', '1'],
  ['run', '--config', 'a.yaml', '--'],
  ['run', '-cx.yaml'],
  ['run', '--constructor', 'x', '--config', 'a.yaml'],
  ['demo'],
  ['check-config', 'a.yaml'],
];

describe('run flags: the fast path and yargs', () => {
  it.each(ACCEPTED.map((a) => [a.join(' '), a]))('accepts `%s`, as yargs parses it', async (_, args) => {
    const fast = viaFast(args);
    expect(fast).toBeDefined();
    expect(fast).toEqual(await viaYargs(args));
  });

  it.each(DEFERRED.map((a) => [a.join(' ') || '(nothing)', a]))('leaves `%s` to yargs', (_, args) => {
    expect(viaFast(args)).toBeUndefined();
  });

  it('a malformed --set is the same ConfigError either way', async () => {
    const args = ['run', '--config', 'a.yaml', '--set', 'novalue'];
    expect(fastRunArgs(args)).toBeDefined();
    expect(() => viaFast(args)).toThrow(/--set key\.path=value/);
    expect(await viaYargs(args)).toMatch(/^(fail|threw): invalid flag:.*--set key\.path=value/s);
  });
});
