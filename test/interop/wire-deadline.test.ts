/**
 * What a Go handler sees as its context deadline when a Node End calls it: none without a timeout (as between Go
 * peers), now + timeout with one. End.call() used to put its default 30 s on the wire.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dial, type End } from '../../sdk/index.js';
import { GoPeer, goAvailable } from './go-peer.js';

describe.skipIf(!goAvailable && !process.env.CI)('the deadline a Go handler sees', () => {
  let go: GoPeer;
  let end: End;
  beforeAll(async () => {
    go = await GoPeer.server();
    end = await dial(go.addr);
    await end.waitRemoteMethods(['deadline'], { timeout: 10_000 });
  });
  afterAll(async () => {
    end?.destroy();
    await go?.stop();
  });

  it('End.call() without a timeout: no deadline', async () => {
    expect((await end.call('deadline')).data.toString()).toBe('none');
  });

  it('End.call() with a timeout: now + timeout', async () => {
    const before = Date.now();
    const got = Number((await end.call('deadline', undefined, { timeout: 8000 })).data.toString());
    const after = Date.now();
    // Go parses the RFC 3339 time the Node side wrote: millisecond precision both ways.
    expect(got).toBeGreaterThanOrEqual(before + 8000 - 5);
    expect(got).toBeLessThanOrEqual(after + 8000 + 5);
  });
});
