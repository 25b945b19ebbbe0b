/**
 * The OpenTelemetry half of tracing, imported only when tracing is enabled (sidecar/observe/tracing.ts loads it):
 * a tracer provider with the configured sampler, a batch span processor with the configured limits, and an
 * OTLP/HTTP exporter. A backend that is down or slow costs the spans and nothing else: the batch queue is bounded,
 * a full queue drops the span, a failed export drops its batch, and both are counted in
 * geminio_trace_spans_dropped_total. Spans are parented explicitly (no async-hooks context manager, which would
 * cost on every callback of the process).
 */
import { type Context, ROOT_CONTEXT, type Span, SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import { ExportResultCode, W3CTraceContextPropagator } from '@opentelemetry/core';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { resourceFromAttributes } from '@opentelemetry/resources';
import {
  AlwaysOffSampler,
  BasicTracerProvider,
  BatchSpanProcessor,
  ParentBasedSampler,
  type ReadableSpan,
  type Sampler,
  type SpanExporter,
  type SpanProcessor,
  TraceIdRatioBasedSampler,
} from '@opentelemetry/sdk-trace-base';
import { ATTR_SERVICE_NAME, ATTR_SERVICE_VERSION } from '@opentelemetry/semantic-conventions';
import type { TracingConfig } from '../config/schema.js';
import type { Logger } from './logger.js';
import type { Metrics } from './metrics.js';
import type { SpanAttributes, SpanHandle, TraceCarrier, TracerImpl } from './tracing.js';
import { SIDECAR_VERSION } from './version.js';

const KINDS = {
  server: SpanKind.SERVER,
  client: SpanKind.CLIENT,
  producer: SpanKind.PRODUCER,
  consumer: SpanKind.CONSUMER,
} as const;

const propagator = new W3CTraceContextPropagator();
const getter = {
  get: (c: TraceCarrier, key: string) => (c as Record<string, string | undefined>)[key],
  keys: (c: TraceCarrier) => Object.keys(c),
};
const setter = {
  set: (c: TraceCarrier, key: string, value: string) => {
    (c as Record<string, string>)[key] = value;
  },
};

class Handle implements SpanHandle {
  constructor(
    readonly span: Span,
    readonly ctx: Context,
  ) {}

  get traceId(): string {
    return this.span.spanContext().traceId;
  }

  get spanId(): string {
    return this.span.spanContext().spanId;
  }

  carrier(): TraceCarrier {
    const out: TraceCarrier = {};
    propagator.inject(this.ctx, out, setter);
    return out;
  }

  set(attributes: SpanAttributes): void {
    for (const [k, v] of Object.entries(attributes)) if (v !== undefined) this.span.setAttribute(k, v);
  }

  end(error?: string): void {
    if (error !== undefined) this.span.setStatus({ code: SpanStatusCode.ERROR, message: error });
    this.span.end();
  }
}

/** Counts what the exporter sent and what it could not. */
class CountingExporter implements SpanExporter {
  settled = 0;

  constructor(
    private readonly inner: SpanExporter,
    private readonly metrics: Metrics,
    private readonly log: Logger,
  ) {}

  export(spans: ReadableSpan[], done: (result: { code: ExportResultCode; error?: Error }) => void): void {
    this.inner.export(spans, (result) => {
      this.settled += spans.length;
      if (result.code === ExportResultCode.SUCCESS) this.metrics.spansExported.inc(spans.length);
      else {
        this.metrics.spansDropped.inc({ reason: 'export_failed' }, spans.length);
        this.log.debug({ err: result.error?.message, spans: spans.length }, 'span export failed');
      }
      done(result);
    });
  }

  shutdown(): Promise<void> {
    return this.inner.shutdown();
  }

  forceFlush(): Promise<void> {
    return this.inner.forceFlush?.() ?? Promise.resolve();
  }
}

/**
 * The batch processor behind a bound of its own: a span ended while the queue (spans ended and not yet exported)
 * is full is dropped here and counted, rather than silently inside the SDK.
 */
class BoundedProcessor implements SpanProcessor {
  private ended = 0;

  constructor(
    private readonly inner: BatchSpanProcessor,
    private readonly exporter: CountingExporter,
    private readonly maxQueueSize: number,
    private readonly metrics: Metrics,
  ) {}

  onStart(span: Parameters<SpanProcessor['onStart']>[0], ctx: Context): void {
    this.inner.onStart(span, ctx);
  }

  onEnd(span: ReadableSpan): void {
    if (this.ended - this.exporter.settled >= this.maxQueueSize) {
      this.metrics.spansDropped.inc({ reason: 'queue_full' });
      return;
    }
    this.ended++;
    this.inner.onEnd(span);
  }

  forceFlush(): Promise<void> {
    return this.inner.forceFlush();
  }

  shutdown(): Promise<void> {
    return this.inner.shutdown();
  }
}

function sampler(config: TracingConfig): Sampler {
  const root =
    config.sampleRatio <= 0 ? new AlwaysOffSampler() : new TraceIdRatioBasedSampler(config.sampleRatio);
  return config.parentBased ? new ParentBasedSampler({ root }) : root;
}

export function createTracer(
  config: TracingConfig,
  serviceName: string,
  metrics: Metrics,
  logger: Logger,
): TracerImpl {
  const log = logger.child({ component: 'tracing' });
  const exporter = new CountingExporter(
    new OTLPTraceExporter({ url: config.endpoint, timeoutMillis: config.exportTimeoutMs }),
    metrics,
    log,
  );
  const batch = new BatchSpanProcessor(exporter, {
    maxQueueSize: config.maxQueueSize,
    maxExportBatchSize: Math.min(config.maxExportBatchSize, config.maxQueueSize),
    scheduledDelayMillis: config.scheduledDelayMs,
    exportTimeoutMillis: config.exportTimeoutMs,
  });
  const provider = new BasicTracerProvider({
    resource: resourceFromAttributes({
      [ATTR_SERVICE_NAME]: serviceName,
      [ATTR_SERVICE_VERSION]: SIDECAR_VERSION,
    }),
    sampler: sampler(config),
    spanProcessors: [new BoundedProcessor(batch, exporter, config.maxQueueSize, metrics)],
  });
  const tracer = provider.getTracer('geminio-sidecar', SIDECAR_VERSION);
  log.info({ endpoint: config.endpoint, sampleRatio: config.sampleRatio, serviceName }, 'tracing on');
  return {
    start(name, kind, parent, attributes) {
      let parentCtx: Context = ROOT_CONTEXT;
      if (parent instanceof Handle) parentCtx = parent.ctx;
      else if (parent && 'traceparent' in parent && parent.traceparent)
        parentCtx = propagator.extract(ROOT_CONTEXT, parent as TraceCarrier, getter);
      const clean: Record<string, string | number | boolean> = {};
      for (const [k, v] of Object.entries(attributes)) if (v !== undefined) clean[k] = v;
      const span = tracer.startSpan(name, { kind: KINDS[kind], attributes: clean }, parentCtx);
      return new Handle(span, trace.setSpan(parentCtx, span));
    },
    async shutdown() {
      await provider.shutdown().catch((err: Error) => log.debug({ err: err.message }, 'tracing shutdown'));
    },
  };
}
