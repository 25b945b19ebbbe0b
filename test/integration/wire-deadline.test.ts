/**
 * Only a timeout the caller chose goes on the wire as a deadline, on the End as on any stream. End.call() and
 * End.publish() used to send their default 30 s wait as the deadline (a handler saw now + 30 s).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { PacketType as T } from '../../sdk/frame/constants.js';
import type { Packet } from '../../sdk/frame/packet.js';
import type { End } from '../../sdk/index.js';
import { tcpPair } from '../helpers/pair.js';

let cleanup: (() => Promise<void>) | undefined;
afterEach(async () => {
  await cleanup?.();
  cleanup = undefined;
});

/** Records the deadline of every Request and Message the server End receives. */
function recordDeadlines(server: End): Array<{ type: string; deadline: number | undefined }> {
  const seen: Array<{ type: string; deadline: number | undefined }> = [];
  const mux = server.session;
  const handle = mux.handlePacket.bind(mux);
  mux.handlePacket = (p: Packet) => {
    if (p.type === T.Request || p.type === T.Message) {
      seen.push({ type: p.type === T.Request ? 'Request' : 'Message', deadline: p.data.deadline });
    }
    handle(p);
  };
  return seen;
}

describe('the deadline on the wire', () => {
  it('End.call(): a Node handler sees no deadline without a timeout, now + timeout with one', async () => {
    const pair = await tcpPair();
    cleanup = pair.cleanup;
    const seen: Array<Date | undefined> = [];
    await pair.server.register('deadline', (r) => {
      seen.push(r.deadline);
      return 'ok';
    });
    await pair.client.waitRemoteMethods(['deadline']);
    await pair.client.call('deadline');
    const before = Date.now();
    await pair.client.call('deadline', undefined, { timeout: 7000 });
    const after = Date.now();
    expect(seen[0]).toBeUndefined();
    expect(seen[1]).toBeInstanceOf(Date);
    expect(seen[1]!.getTime()).toBeGreaterThanOrEqual(before + 7000 - 5);
    expect(seen[1]!.getTime()).toBeLessThanOrEqual(after + 7000 + 5);
  });

  it('End.publish(): the Message carries no deadline without a timeout, now + timeout with one', async () => {
    const pair = await tcpPair();
    cleanup = pair.cleanup;
    const seen = recordDeadlines(pair.server);
    void (async () => {
      for await (const m of pair.server.messages()) m.done();
    })().catch(() => {});
    await pair.client.publish('a');
    const before = Date.now();
    await pair.client.publish('b', { timeout: 9000 });
    const after = Date.now();
    const messages = seen.filter((s) => s.type === 'Message');
    expect(messages).toHaveLength(2);
    expect(messages[0]!.deadline).toBeUndefined();
    expect(messages[1]!.deadline).toBeGreaterThanOrEqual(before + 9000 - 5);
    expect(messages[1]!.deadline).toBeLessThanOrEqual(after + 9000 + 5);
  });

  it('a default timeout still bounds the wait locally', async () => {
    const pair = await tcpPair({ callTimeout: 200 });
    cleanup = pair.cleanup;
    await pair.server.register('never', () => new Promise(() => {}));
    await pair.client.waitRemoteMethods(['never']);
    const err = await pair.client.call('never').catch((e: Error) => e);
    expect((err as Error).name).toBe('TimeoutError');
  });
});
