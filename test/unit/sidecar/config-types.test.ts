// The config types are inferred from the schema (sidecar/config/schema.ts): these checks run in `npm run
// typecheck` (a wrong inference fails the compile) and the runtime half checks that what validate() returns has the
// shape the types promise.
import { describe, expect, expectTypeOf, it } from 'vitest';
import { parseConfig } from '../../../sidecar/config/load.js';
import type {
  HttpServerConfig,
  InboundConfig,
  PluginConfig,
  SidecarConfig,
  TlsConfig,
  TunnelConfig,
  UpstreamConfig,
} from '../../../sidecar/config/schema.js';

describe('config types from the schema', () => {
  it('optional schemas are optional keys; defaults make required ones', () => {
    expectTypeOf<SidecarConfig['inbound']>().toEqualTypeOf<InboundConfig | undefined>();
    expectTypeOf<InboundConfig['messages']>().toEqualTypeOf<
      { webhook: string; timeoutMs: number; concurrency: number } | undefined
    >();
    expectTypeOf<TlsConfig>().toEqualTypeOf<{
      enabled: boolean;
      rejectUnauthorized: boolean;
      requestCert: boolean;
      caFile?: string;
      certFile?: string;
      keyFile?: string;
      servername?: string;
    }>();
    expectTypeOf<UpstreamConfig['reconnect']>().toEqualTypeOf<{
      minDelayMs: number;
      maxDelayMs: number;
      jitter: number;
    }>();
    expectTypeOf<HttpServerConfig>().toEqualTypeOf<{
      headersTimeoutMs: number;
      bodyIdleTimeoutMs: number;
      maxHeaderBytes: number;
      maxHeaders: number;
      maxConnections: number;
    }>();
  });

  it('enums are unions, maps are records, mappings are open', () => {
    expectTypeOf<TunnelConfig['protocol']>().toEqualTypeOf<'tcp' | 'http'>();
    expectTypeOf<SidecarConfig['log']['format']>().toEqualTypeOf<'auto' | 'json' | 'pretty'>();
    expectTypeOf<InboundConfig['names']>().toEqualTypeOf<Record<string, { clientIds: string[] }>>();
    expectTypeOf<PluginConfig>().toEqualTypeOf<{
      path: string;
      options: Record<string, unknown>;
      timeoutMs: number;
    }>();
  });

  it('validate() fills in what the types say is there', () => {
    const c = parseConfig({ inbound: {}, upstreams: { up: { address: '127.0.0.1:1' } } });
    expect(c.log.format).toBe('auto');
    expect(c.inbound?.messages).toBeUndefined();
    expect(c.inbound?.names).toEqual({});
    expect(c.upstreams.up?.tls).toMatchObject({
      enabled: false,
      rejectUnauthorized: true,
      requestCert: false,
    });
    expect(c.upstreams.up?.tls.caFile).toBeUndefined();
  });
});
