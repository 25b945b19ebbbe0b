#!/usr/bin/env node
/**
 * The `geminio-sidecar` command: `run --config FILE`, `demo`, `check-config FILE`, `--help`, `--version`.
 * Exit codes: 0 ok, 1 runtime failure (a port in use...), 2 invalid config or usage.
 *
 * A plain `run --config FILE [flags]` is parsed by config/flags.ts and yargs is never loaded (it costs the idle
 * sidecar about 5 MB of RSS); everything else goes to the yargs command line of ./commands.ts.
 */
import { fastRunArgs, flagOverrides } from './config/flags.js';
import { ConfigError } from './config/load.js';
import { loadRunnable } from './config/preflight.js';
import { runProcess } from './process.js';

function fail(err: unknown): never {
  if (err instanceof ConfigError) {
    process.stderr.write(`geminio-sidecar: ${err.message}\n`);
    process.exit(2);
  }
  process.stderr.write(`geminio-sidecar: ${(err as Error).message ?? String(err)}\n`);
  process.exit(1);
}

async function run(argv: Record<string, unknown> & { config: string }): Promise<void> {
  let flags: ReturnType<typeof flagOverrides>;
  try {
    flags = flagOverrides(argv);
  } catch (err) {
    fail(err);
  }
  await runProcess({ file: argv.config, flags, env: process.env }).catch(fail);
}

const args = process.argv.slice(2);
const fast = fastRunArgs(args);
if (fast) {
  await run(fast as Record<string, unknown> & { config: string });
} else {
  const { buildCli } = await import('./commands.js');
  await buildCli(args, {
    run,
    async demo(ports, logLevel) {
      const { demoGuide, startDemo } = await import('./demo.js');
      const demo = await startDemo(ports, { logLevel }).catch(fail);
      process.stdout.write(demoGuide(ports, demo.commands));
      const stop = () => void demo.stop().then(() => process.exit(0));
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
    },
    async checkConfig(file) {
      try {
        const c = await loadRunnable(file, { env: process.env });
        const count = c.outbound.http.length + c.outbound.tcp.length + c.tunnels.length;
        process.stdout.write(
          `${file}: ok (${Object.keys(c.upstreams).length} upstreams, ${count} listeners, ` +
            `${Object.keys(c.services).length} services, inbound ${c.inbound ? c.inbound.listen : 'off'})\n`,
        );
      } catch (err) {
        fail(err);
      }
    },
    fail,
    usage(text) {
      process.stderr.write(text);
      process.exit(2);
    },
  }).parseAsync();
}
