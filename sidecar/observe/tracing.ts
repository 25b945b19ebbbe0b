/**
 * Tracing, off by default. When the `tracing` config section enables it, the OpenTelemetry SDK is loaded (lazily:
 * an idle sidecar without tracing never evaluates it) and each proxied HTTP exchange gets a server span (the
 * request as received, its parent the caller's `traceparent`) and a client span (the request as forwarded, whose
 * context is what goes on in `traceparent`/`tracestate`). Streams, RPC calls and messages carry the context across
 * the geminio hop in their meta (see docs/PROTOCOL.md).
 */
import type { TracingConfig } from '../config/schema.js';
import type { Logger } from './logger.js';
import type { Metrics } from './metrics.js';

export const DEFAULT_TRACING: TracingConfig = {
  enabled: false,
  endpoint: 'http://127.0.0.1:4318/v1/traces',
  sampleRatio: 1,
  parentBased: true,
  maxQueueSize: 2048,
  maxExportBatchSize: 512,
  scheduledDelayMs: 5_000,
  exportTimeoutMs: 10_000,
};

/** W3C trace context as carried in HTTP headers or geminio meta. */
export interface TraceCarrier {
  traceparent?: string;
  tracestate?: string;
}

export type SpanAttributes = Record<string, string | number | boolean | undefined>;

/** One span in progress. */
export interface SpanHandle {
  readonly traceId: string;
  readonly spanId: string;
  /** The context to send on (traceparent/tracestate of this span). */
  carrier(): TraceCarrier;
  set(attributes: SpanAttributes): void;
  /** Ends the span; an error status when `error` is set. */
  end(error?: string): void;
}

/** What the OpenTelemetry half provides (sidecar/observe/otel.ts). */
export interface TracerImpl {
  /** Starts a span; `parent` is the incoming context (a span handle, or carried headers). */
  start(
    name: string,
    kind: 'server' | 'client' | 'producer' | 'consumer',
    parent: SpanHandle | TraceCarrier | undefined,
    attributes: SpanAttributes,
  ): SpanHandle;
  shutdown(): Promise<void>;
}

/** The sidecar's tracer: a no-op until start() loaded the SDK for an enabled config. */
export class Tracing {
  private impl: TracerImpl | undefined;

  get enabled(): boolean {
    return this.impl !== undefined;
  }

  /** Loads the OpenTelemetry SDK and starts exporting, if the config enables tracing. */
  async load(config: TracingConfig, serviceName: string, metrics: Metrics, logger: Logger): Promise<void> {
    if (!config.enabled || this.impl) return;
    const { createTracer } = await import('./otel.js');
    this.impl = createTracer(config, serviceName, metrics, logger);
  }

  /** A span, or undefined when tracing is off. */
  start(
    name: string,
    kind: 'server' | 'client' | 'producer' | 'consumer',
    parent: SpanHandle | TraceCarrier | undefined,
    attributes: SpanAttributes = {},
  ): SpanHandle | undefined {
    return this.impl?.start(name, kind, parent, attributes);
  }

  /** Exports what is left (bounded by the export timeout) and stops. */
  async shutdown(): Promise<void> {
    const impl = this.impl;
    this.impl = undefined;
    await impl?.shutdown();
  }
}

/** The trace context of HTTP request headers. */
export function headerCarrier(
  headers: Record<string, string | string[] | undefined>,
): TraceCarrier | undefined {
  const tp = headers.traceparent;
  if (typeof tp !== 'string') return undefined;
  const ts = headers.tracestate;
  return { traceparent: tp, tracestate: typeof ts === 'string' ? ts : undefined };
}

/**
 * The trace context as the `custom` bytes of an RPC request or a message (JSON {"traceparent", "tracestate"}):
 * the Go library passes custom through to the app untouched, and the sidecar sent nothing there before.
 */
export function customCarrier(carrier: TraceCarrier | undefined): string | undefined {
  if (!carrier?.traceparent) return undefined;
  return JSON.stringify(carrier.tracestate ? carrier : { traceparent: carrier.traceparent });
}

/** The trace context in a request's or message's custom bytes, or in a stream meta's JSON; undefined if none. */
export function parseCarrier(bytes: Buffer | string | undefined): TraceCarrier | undefined {
  if (bytes === undefined || bytes.length === 0 || bytes.length > 4096) return undefined;
  try {
    const v = JSON.parse(bytes.toString()) as Record<string, unknown>;
    if (!v || typeof v.traceparent !== 'string') return undefined;
    return {
      traceparent: v.traceparent,
      tracestate: typeof v.tracestate === 'string' ? v.tracestate : undefined,
    };
  } catch {
    return undefined;
  }
}
