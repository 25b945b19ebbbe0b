/**
 * The full command line of `geminio-sidecar`, with yargs: `run`, `demo`, `check-config`, `--help`, `--version`.
 * sidecar/cli.ts parses a plain `run --config FILE` itself and loads this module for everything else (see
 * config/flags.ts for why); the options of `run` come from the table both read.
 */
import yargs, { type Argv } from 'yargs';
import { RUN_OPTIONS } from './config/flags.js';
import { DEMO_PORTS, type DemoPorts } from './demo.js';
import { SIDECAR_VERSION } from './observe/version.js';

/** What each command does (the process's in cli.ts; a test's to see what yargs parsed). */
export interface CliHandlers {
  run(argv: Record<string, unknown> & { config: string }): Promise<void>;
  demo(ports: DemoPorts, logLevel: string): Promise<void>;
  checkConfig(file: string): Promise<void>;
  /** An error thrown by a handler, or a ConfigError from one. */
  fail(err: Error): void;
  /** A usage error: the help and the message, to stderr, exit 2. */
  usage(text: string): void;
}

/** The yargs parser of `args` (the arguments after the node and script paths); call parseAsync() on it. */
export function buildCli(args: string[], handlers: CliHandlers): Argv {
  return yargs(args)
    .scriptName('geminio-sidecar')
    .usage(
      '$0 <command> [options]\n\nA geminio sidecar: HTTP, TCP, RPC and messages over one multiplexed connection.',
    )
    .command(
      'run',
      'run the sidecar from a config file (YAML or JSON)',
      (y) => {
        for (const [flag, option] of Object.entries(RUN_OPTIONS)) {
          y.option(flag, {
            type: 'string',
            describe: option.describe,
            ...(option.alias ? { alias: option.alias } : {}),
            ...(option.array ? { array: true } : {}),
            ...(flag === 'config' ? { demandOption: 'give the config file: run --config FILE' } : {}),
          });
        }
        return y.epilog(
          'Environment: GEMINIO_SIDECAR_ADMIN_PORT, GEMINIO_SIDECAR_LOG_LEVEL, ... or GEMINIO_SIDECAR__a__b=value',
        );
      },
      async (argv) => {
        await handlers.run(argv as unknown as Record<string, unknown> & { config: string });
      },
    )
    .command(
      'demo',
      'run a sample app, an inbound and an outbound sidecar on loopback, and print what to try',
      (y) =>
        y
          .option('host', { type: 'string', default: DEMO_PORTS.host })
          .option('http-port', {
            type: 'number',
            default: DEMO_PORTS.http,
            describe: 'outbound HTTP listener',
          })
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
          .option('echo-port', {
            type: 'number',
            default: DEMO_PORTS.echo,
            describe: 'sample TCP echo server',
          })
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
        await handlers.demo(ports, argv['log-level']);
      },
    )
    .command(
      'check-config <file>',
      'check a config file (with the environment overrides) as run would before binding: every key, the files it names, the plugins; exit 2 on any problem',
      (y) => y.positional('file', { type: 'string', demandOption: true }),
      async (argv) => {
        await handlers.checkConfig(argv.file);
      },
    )
    .demandCommand(1, 'give a command: run, demo or check-config')
    .strict()
    .version(SIDECAR_VERSION)
    .alias('h', 'help')
    .alias('v', 'version')
    .fail((msg, err, y) => {
      if (err) handlers.fail(err);
      else handlers.usage(`${y.help()}\n\n${msg}\n`);
    });
}
