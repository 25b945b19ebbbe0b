/**
 * The access log: one line per HTTP exchange, and one per request refused by the parser or the limits. Which
 * optional fields are written, whether query strings are redacted, and the share of successful exchanges logged
 * come from the `accessLog` config section.
 */
import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { AccessLogConfig, AccessLogField } from '../config/schema.js';
import type { Logger } from './logger.js';

export const DEFAULT_ACCESS_LOG: AccessLogConfig = {
  enabled: true,
  fields: [],
  redactQuery: true,
  sampleRatio: 1,
};

/** The request ID header: kept when the client sent a sane one, generated otherwise. */
export const REQUEST_ID_HEADER = 'x-request-id';
const SANE_ID = /^[\x21-\x7e]{1,200}$/;

/** The request's ID (x-request-id): the client's when it sent a sane one, else a new UUID set on the request. */
export function requestId(req: IncomingMessage): string {
  const given = req.headers[REQUEST_ID_HEADER];
  if (typeof given === 'string' && SANE_ID.test(given)) return given;
  const id = randomUUID();
  req.headers[REQUEST_ID_HEADER] = id;
  return id;
}

/** A path with its query string redacted (`/a?REDACTED`), or as sent. */
export function logPath(url: string | undefined, redact: boolean): string | undefined {
  if (url === undefined || !redact) return url;
  const q = url.indexOf('?');
  return q < 0 ? url : `${url.slice(0, q)}?REDACTED`;
}

export type AccessFields = Partial<Record<AccessLogField, unknown>> & {
  method?: string;
  path?: string;
  status: number;
  durationMs?: number;
  refused?: string;
};

export class AccessLog {
  private all = true;
  private wanted: ReadonlySet<string> = new Set();
  config: AccessLogConfig = DEFAULT_ACCESS_LOG;

  constructor(config: AccessLogConfig = DEFAULT_ACCESS_LOG) {
    this.update(config);
  }

  /** Takes a reloaded config section (the listeners keep this object). */
  update(config: AccessLogConfig): void {
    this.config = config;
    this.all = config.fields.length === 0;
    this.wanted = new Set(config.fields);
  }

  /** Whether a line for this status would be written (so callers can skip building it). */
  wants(logger: Logger, status: number): boolean {
    if (!this.config.enabled || !logger.isLevelEnabled('info')) return false;
    if (status >= 400 || this.config.sampleRatio >= 1) return true;
    return Math.random() < this.config.sampleRatio;
  }

  path(url: string | undefined): string | undefined {
    return logPath(url, this.config.redactQuery);
  }

  /** Writes one line with the configured fields (method, path, status and durationMs always). */
  write(logger: Logger, fields: AccessFields): void {
    let line: Record<string, unknown> = fields;
    if (!this.all) {
      line = {};
      for (const [k, v] of Object.entries(fields)) {
        if (k === 'method' || k === 'path' || k === 'status' || k === 'durationMs' || k === 'refused')
          line[k] = v;
        else if (this.wanted.has(k)) line[k] = v;
      }
    }
    logger.info(line, 'access');
  }
}
