/**
 * Command-line front end of the chaos proxy:
 *
 *   npx tsx chaos/cli.ts --listen 127.0.0.1:9000 --target 127.0.0.1:8000 --delay 50
 *
 * Faults can then be changed by typing commands on stdin (see `--help`). Exit status: 0 after
 * `quit`/SIGINT/SIGTERM, 1 if it cannot listen, 2 for a bad command line.
 */
import { createInterface } from 'node:readline';
import type { CliConfig } from './args.js';
import { parseCliArgs, parseCommand, USAGE, UsageError } from './args.js';
import { ChaosProxy, type HostPort } from './proxy.js';

const say = (line: string) => process.stdout.write(`${line}\n`);
const fmt = (a: HostPort) => (a.host.includes(':') ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`);

async function main(argv: string[]): Promise<number> {
  let config: CliConfig | null;
  try {
    config = parseCliArgs(argv);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    process.stderr.write(`chaos: ${err.message}\nRun with --help for usage.\n`);
    return 2;
  }
  if (config === null) {
    process.stdout.write(USAGE);
    return 0;
  }
  const cfg = config;

  let proxy: ChaosProxy;
  try {
    proxy = new ChaosProxy({ target: cfg.target, listen: cfg.listen, faults: cfg.faults });
    await proxy.start();
  } catch (err) {
    process.stderr.write(`chaos: cannot listen on ${fmt(cfg.listen)}: ${(err as Error).message}\n`);
    return 1;
  }
  say(`listening ${fmt(proxy.address())} -> ${fmt(cfg.target)} faults ${JSON.stringify(proxy.faults)}`);
  proxy.on('connection', (id, info) => say(`connection ${id} from ${info.remoteAddress}:${info.remotePort}`));
  proxy.on('refused', (info) => say(`refused connection from ${info.remoteAddress}:${info.remotePort}`));

  return new Promise<number>((resolve) => {
    const rl = createInterface({ input: process.stdin, terminal: false });
    let stopping = false;
    const stop = (reason: string) => {
      if (stopping) return;
      stopping = true;
      process.off('SIGINT', onSigint);
      process.off('SIGTERM', onSigterm);
      rl.close();
      // Reading stdin keeps the event loop alive; stop it so the process can exit on its own.
      process.stdin.destroy();
      void proxy.close().then(() => {
        say(`closed (${reason})`);
        resolve(0);
      });
    };
    const onSigint = () => stop('SIGINT');
    const onSigterm = () => stop('SIGTERM');
    process.on('SIGINT', onSigint);
    process.on('SIGTERM', onSigterm);
    // EOF on stdin is deliberately not a quit: the proxy may run in the background with stdin closed.

    rl.on('line', (line) => {
      if (stopping) return;
      try {
        const cmd = parseCommand(line, cfg);
        if (cmd === null) return;
        switch (cmd.kind) {
          case 'kill':
            say(`killed ${proxy.killAll()} connection(s)`);
            break;
          case 'reset':
            say(`reset ${proxy.resetAll()} connection(s)`);
            break;
          case 'stats':
            say(JSON.stringify({ ...proxy.stats, connections: proxy.connections }));
            break;
          case 'faults':
            say(JSON.stringify(proxy.faults));
            break;
          case 'help':
            process.stdout.write(USAGE);
            break;
          case 'quit':
            stop('quit');
            break;
          case 'set':
            proxy.setFaults(cmd.faults);
            say(`ok ${cmd.description}`);
            break;
        }
      } catch (err) {
        say(`error: ${(err as Error).message}`);
      }
    });
  });
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`chaos: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exitCode = 1;
  },
);
