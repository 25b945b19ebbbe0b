/**
 * Runs a Sidecar as the process: SIGTERM/SIGINT shut down gracefully (a second signal exits at once), SIGHUP
 * reloads the config file (a bad file keeps the running config and says why).
 */
import { ConfigError, loadConfig } from './config.js';
import { createLogger } from './logger.js';
import { Sidecar } from './main.js';

export interface RunOptions {
  file: string | undefined;
  /** Overrides from flags, applied after the environment: [path, value]. */
  flags: Array<[string[], string]>;
  env: NodeJS.ProcessEnv;
}

/** Loads, starts, and wires the signals. Resolves once started; the process exits after a shutdown. */
export async function runProcess(options: RunOptions): Promise<Sidecar> {
  const load = () => loadConfig(options.file, { env: options.env, flags: options.flags });
  const config = load();
  const logger = createLogger(config.log);
  const sidecar = new Sidecar(config, { logger });
  await sidecar.start();

  let stopping = false;
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) {
      logger.warn({ signal }, 'second signal: exiting now');
      process.exit(1);
    }
    stopping = true;
    logger.info({ signal }, 'signal received');
    sidecar.shutdown().then(
      () => {
        logger.flush();
        process.exit(0);
      },
      (err: Error) => {
        logger.error({ err: err.message }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  process.on('SIGHUP', () => {
    if (stopping) return;
    let next: ReturnType<typeof load>;
    try {
      next = load();
    } catch (err) {
      sidecar.metrics.reloads.inc({ outcome: 'invalid' });
      const message = err instanceof ConfigError ? err.message : (err as Error).message;
      logger.error({ err: message }, 'reload refused: the new config is invalid; keeping the running one');
      return;
    }
    logger.info({ file: options.file }, 'SIGHUP: reloading config');
    void sidecar.reload(next);
  });
  return sidecar;
}
