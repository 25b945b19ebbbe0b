/**
 * The stream-meta contract between the two directions: what an outbound listener (or a tunnel) puts in the meta of
 * a stream it opens, and how the inbound side reads it to pick a service. JSON `{"service": "x", "proto": "http"}`;
 * a bare string is a service name (for openers that are not sidecars, e.g. Go code).
 */
import type { TraceCarrier } from '../observe/tracing.js';

/** What an opener puts in the stream meta (a traced TCP stream's also its W3C trace context, docs/PROTOCOL.md §9). */
export interface StreamMeta extends TraceCarrier {
  service: string;
  /**
   * "http": HTTP/1.1 bytes; "h2": one HTTP/2 request per stream, framed as in proxy/h2.ts; "exchange": HTTP
   * exchanges one after another on a persistent stream, in the same frames (proxy/exchange.ts); "tcp": raw bytes.
   */
  proto: StreamProto;
}

export type StreamProto = 'http' | 'tcp' | 'h2' | 'exchange';

/** The meta for a stream to `service` speaking `proto`. */
export function streamMeta(service: string, proto: StreamProto, trace?: TraceCarrier): string {
  const meta: StreamMeta = { service, proto };
  if (trace?.traceparent) meta.traceparent = trace.traceparent;
  if (trace?.tracestate) meta.tracestate = trace.tracestate;
  return JSON.stringify(meta);
}

/** Reads a stream meta; a plain string is taken as the service name (for non-sidecar openers, e.g. Go code). */
export function parseStreamMeta(meta: Buffer): { service: string; proto: string | undefined } {
  const text = meta.toString('utf8');
  try {
    const v = JSON.parse(text) as Partial<StreamMeta>;
    if (v && typeof v.service === 'string') return { service: v.service, proto: v.proto };
  } catch {
    // not JSON: a bare service name
  }
  return { service: text, proto: undefined };
}
