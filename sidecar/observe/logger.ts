/**
 * pino logging. JSON lines by default; human-readable when stdout is a TTY (or log.format is "pretty"). pino-pretty
 * is used as a plain stream in this thread, not as a worker transport, so the single-file bundle needs no files
 * beside it.
 */
import pino, { type Logger } from 'pino';
import pretty from 'pino-pretty';

export type { Logger } from 'pino';

export interface LoggerOptions {
  level: string;
  format: 'auto' | 'json' | 'pretty';
  /** Where JSON lines go (tests pass a collecting stream). Default stdout. */
  destination?: NodeJS.WritableStream;
}

/** Creates the root logger. Child loggers add `clientId`, `streamId`, `listener` and the like. */
export function createLogger(options: LoggerOptions): Logger {
  const usePretty =
    options.format === 'pretty' || (options.format === 'auto' && process.stdout.isTTY === true);
  const base = {
    level: options.level,
    base: { pid: process.pid },
    timestamp: pino.stdTimeFunctions.isoTime,
    // "level":"warn" rather than 40: what log pipelines and people filter on.
    formatters: { level: (label: string) => ({ level: label }) },
  };
  if (usePretty && !options.destination) {
    return pino(base, pretty({ colorize: process.stdout.isTTY === true, sync: true }));
  }
  return pino(base, options.destination ?? pino.destination({ fd: 1, sync: false }));
}

/** A logger that writes nothing (unit tests, check-config). */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
