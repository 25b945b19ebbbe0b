// The stream-meta contract both directions speak (sidecar/proxy/stream-meta.ts): what an outbound listener writes
// is what the inbound router reads, and openers that are not sidecars may send a bare service name.
import { describe, expect, it } from 'vitest';
import { parseStreamMeta, streamMeta } from '../../../sidecar/proxy/stream-meta.js';

describe('stream meta', () => {
  it('round-trips the service and protocol an opener writes', () => {
    for (const proto of ['http', 'tcp'] as const) {
      const meta = Buffer.from(streamMeta('orders', proto));
      expect(parseStreamMeta(meta)).toEqual({ service: 'orders', proto });
    }
  });

  it('is JSON with exactly service and proto, so Go openers can write it too', () => {
    expect(JSON.parse(streamMeta('a b', 'tcp'))).toEqual({ service: 'a b', proto: 'tcp' });
  });

  it('takes a bare string as a service name without a protocol', () => {
    expect(parseStreamMeta(Buffer.from('billing'))).toEqual({ service: 'billing', proto: undefined });
    expect(parseStreamMeta(Buffer.alloc(0))).toEqual({ service: '', proto: undefined });
  });

  it('takes JSON without a string service as a bare name (the whole text)', () => {
    for (const text of ['{"proto":"http"}', '{"service":7}', '42', 'null', '["x"]']) {
      expect(parseStreamMeta(Buffer.from(text))).toEqual({ service: text, proto: undefined });
    }
  });

  it('keeps an unknown protocol for the router to judge', () => {
    expect(parseStreamMeta(Buffer.from('{"service":"s","proto":"h2"}'))).toEqual({
      service: 's',
      proto: 'h2',
    });
  });
});
