/**
 * pino logging. JSON lines by default; human-readable when stdout is a TTY (or log.format is "pretty"). pino-pretty
 * is used as a plain stream in this thread, not as a worker transport, so the single-file bundle needs no files
 * beside it. It is loaded only for a logger that prints pretty (loadPretty): a sidecar logging JSON, as one does
 * off a terminal, never evaluates it (0.4 MB of RSS idle, docs/SIDECAR.md "Memory").
 */
import pino, { type Logger } from 'pino';
import type prettyFactory from 'pino-pretty';

export type { Logger } from 'pino';

export interface LoggerOptions {
  level: string;
  format: 'auto' | 'json' | 'pretty';
  /** Where JSON lines go (tests pass a collecting stream). Default stdout. */
  destination?: NodeJS.WritableStream;
}

let pretty: typeof prettyFactory | undefined;

function wantsPretty(options: LoggerOptions): boolean {
  if (options.destination) return false;
  return options.format === 'pretty' || (options.format === 'auto' && process.stdout.isTTY === true);
}

/** Loads pino-pretty if a logger with these options prints pretty; call it before createLogger. */
export async function loadPretty(options: LoggerOptions): Promise<void> {
  if (wantsPretty(options) && !pretty) pretty = (await import('pino-pretty')).default;
}

/**
 * Creates the root logger. Child loggers add `clientId`, `streamId`, `listener` and the like. Pretty output needs
 * loadPretty(options) first (the CLI's run and demo do it); without it the lines are JSON.
 */
export function createLogger(options: LoggerOptions): Logger {
  const base = {
    level: options.level,
    base: { pid: process.pid },
    timestamp: pino.stdTimeFunctions.isoTime,
    // "level":"warn" rather than 40: what log pipelines and people filter on.
    formatters: { level: (label: string) => ({ level: label }) },
  };
  if (pretty && wantsPretty(options)) {
    return pino(base, pretty({ colorize: process.stdout.isTTY === true, sync: true }));
  }
  return pino(base, options.destination ?? pino.destination({ fd: 1, sync: false }));
}

/** A logger that writes nothing (unit tests, check-config). */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
