#!/usr/bin/env node
/**
 * The `geminio-sidecar` command: `run --config FILE`, `demo`, `check-config FILE`, `--help`, `--version`.
 * Exit codes: 0 ok, 1 runtime failure (a port in use...), 2 invalid config or usage.
 */
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { ConfigError, type Override } from './config/load.js';
import { loadRunnable } from './config/preflight.js';
import { DEMO_PORTS, demoGuide, startDemo } from './demo.js';
import { SIDECAR_VERSION } from './observe/version.js';
import { runProcess } from './process.js';

/** The package version (baked in by the bundle, read from package.json otherwise). */
function version(): string {
  return SIDECAR_VERSION;
}

function fail(err: unknown): never {
  if (err instanceof ConfigError) {
    process.stderr.write(`geminio-sidecar: ${err.message}\n`);
    process.exit(2);
  }
  process.stderr.write(`geminio-sidecar: ${(err as Error).message ?? String(err)}\n`);
  process.exit(1);
}

/** Flags that override config keys, as [path, value] pairs. `--set a.b=v` is the general form. */
function flagOverrides(argv: Record<string, unknown>): Override[] {
  const out: Override[] = [];
  const add = (path: string[], flag: string) => {
    const v = argv[flag];
    if (v !== undefined) out.push([path, String(v), `flag --${flag}`]);
  };
  add(['admin', 'listen'], 'admin-listen');
  add(['log', 'level'], 'log-level');
  add(['log', 'format'], 'log-format');
  add(['name'], 'name');
  add(['shutdown', 'gracePeriodMs'], 'grace-period-ms');
  for (const s of (argv.set as string[] | undefined) ?? []) {
    const eq = s.indexOf('=');
    if (eq <= 0) fail(new ConfigError([{ path: s, value: s, expected: '--set key.path=value' }], 'flag'));
    const key = s.slice(0, eq);
    out.push([key.split('.'), s.slice(eq + 1), `flag --set ${key}`]);
  }
  return out;
}

await yargs(hideBin(process.argv))
  .scriptName('geminio-sidecar')
  .usage(
    '$0 <command> [options]\n\nA geminio sidecar: HTTP, TCP, RPC and messages over one multiplexed connection.',
  )
  .command(
    'run',
    'run the sidecar from a config file (YAML or JSON)',
    (y) =>
      y
        .option('config', {
          alias: 'c',
          type: 'string',
          demandOption: 'give the config file: run --config FILE',
          describe: 'config file (YAML or JSON); required',
        })
        .option('admin-listen', {
          type: 'string',
          describe: 'admin address host:port (/metrics, /healthz, /readyz)',
        })
        .option('log-level', { type: 'string', describe: 'fatal, error, warn, info, debug, trace or silent' })
        .option('log-format', { type: 'string', describe: 'auto, json or pretty' })
        .option('name', { type: 'string', describe: 'name announced to upstreams' })
        .option('grace-period-ms', {
          type: 'string',
          describe: 'how long a shutdown waits for work in flight',
        })
        .option('set', {
          type: 'string',
          array: true,
          describe: 'override any key: --set outbound.http.0.listen=:8081',
        })
        .epilog(
          'Environment: GEMINIO_SIDECAR_ADMIN_PORT, GEMINIO_SIDECAR_LOG_LEVEL, ... or GEMINIO_SIDECAR__a__b=value',
        ),
    async (argv) => {
      await runProcess({ file: argv.config, flags: flagOverrides(argv), env: process.env }).catch(fail);
    },
  )
  .command(
    'demo',
    'run a sample app, an inbound and an outbound sidecar on loopback, and print what to try',
    (y) =>
      y
        .option('host', { type: 'string', default: DEMO_PORTS.host })
        .option('http-port', { type: 'number', default: DEMO_PORTS.http, describe: 'outbound HTTP listener' })
        .option('tcp-port', { type: 'number', default: DEMO_PORTS.tcp, describe: 'outbound TCP listener' })
        .option('geminio-port', {
          type: 'number',
          default: DEMO_PORTS.geminio,
          describe: 'inbound geminio listener',
        })
        .option('admin-port', { type: 'number', default: DEMO_PORTS.admin, describe: 'outbound admin' })
        .option('inbound-admin-port', {
          type: 'number',
          default: DEMO_PORTS.inboundAdmin,
          describe: 'inbound admin',
        })
        .option('app-port', { type: 'number', default: DEMO_PORTS.app, describe: 'sample HTTP app' })
        .option('echo-port', { type: 'number', default: DEMO_PORTS.echo, describe: 'sample TCP echo server' })
        .option('log-level', { type: 'string', default: 'info' }),
    async (argv) => {
      const ports = {
        host: argv.host,
        http: argv['http-port'],
        tcp: argv['tcp-port'],
        geminio: argv['geminio-port'],
        admin: argv['admin-port'],
        inboundAdmin: argv['inbound-admin-port'],
        app: argv['app-port'],
        echo: argv['echo-port'],
      };
      const demo = await startDemo(ports, { logLevel: argv['log-level'] }).catch(fail);
      process.stdout.write(demoGuide(ports, demo.commands));
      const stop = () => void demo.stop().then(() => process.exit(0));
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
    },
  )
  .command(
    'check-config <file>',
    'check a config file (with the environment overrides) as run would before binding: every key, the files it names, the plugins; exit 2 on any problem',
    (y) => y.positional('file', { type: 'string', demandOption: true }),
    async (argv) => {
      try {
        const c = await loadRunnable(argv.file, { env: process.env });
        const count = c.outbound.http.length + c.outbound.tcp.length + c.tunnels.length;
        process.stdout.write(
          `${argv.file}: ok (${Object.keys(c.upstreams).length} upstreams, ${count} listeners, ` +
            `${Object.keys(c.services).length} services, inbound ${c.inbound ? c.inbound.listen : 'off'})\n`,
        );
      } catch (err) {
        fail(err);
      }
    },
  )
  .demandCommand(1, 'give a command: run, demo or check-config')
  .strict()
  .version(version())
  .alias('h', 'help')
  .alias('v', 'version')
  .fail((msg, err, y) => {
    if (err) fail(err);
    process.stderr.write(`${y.help()}\n\n${msg}\n`);
    process.exit(2);
  })
  .parseAsync();
