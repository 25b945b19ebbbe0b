/**
 * The access log and the HTTP exchange metrics: one line and one observation per HTTP exchange, in either
 * direction, when the exchange ends.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from './logger.js';
import { type Direction, type Metrics, methodLabel } from './metrics.js';

export interface ObserveInfo {
  listener: string;
  direction: Direction;
  clientId?: string;
  streamId?: string;
  metrics: Metrics;
  logger: Logger;
  /** Counts the exchange as work in flight (graceful shutdown waits for it). */
  inflight: { begin(): () => void };
}

/** Counts the exchange in flight, and when it ends: metrics and one access-log line. */
export function observe(req: IncomingMessage, res: ServerResponse, info: ObserveInfo): void {
  const started = performance.now();
  const done = info.inflight.begin();
  res.once('close', () => {
    done();
    const seconds = (performance.now() - started) / 1e3;
    const method = methodLabel(req.method);
    const status = res.headersSent ? res.statusCode : 499; // 499: the client went away before an answer
    info.metrics.httpExchange(info.listener, method, status, seconds);
    info.metrics.protocolRequest(info.listener, 'http/1.1');
    // The access line only when it is written: building it is most of what an exchange costs here otherwise.
    if (!info.logger.isLevelEnabled('info')) return;
    info.logger.info(
      {
        listener: info.listener,
        direction: info.direction,
        protocol: 'http/1.1',
        clientId: info.clientId,
        streamId: info.streamId,
        method: req.method,
        path: req.url,
        status,
        completed: res.writableFinished,
        durationMs: Math.round(seconds * 1e6) / 1e3,
      },
      'access',
    );
  });
}
