/**
 * The flow-control extension between geminio-node peers, and the limits that keep memory bounded.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { Capability } from '../../sdk/frame/index.js';
import {
  type DialOptions,
  type End,
  LimitExceededError,
  type ListenOptions,
  ProtocolError,
  type Stream,
  StreamRefusedError,
} from '../../sdk/index.js';
import { delay, randomBytes, tcpPair } from '../helpers/pair.js';
import { waitUntil } from '../helpers/wait.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const WINDOW = 256 * KiB;

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0)) await c();
});

async function pair(client: DialOptions = {}, server: ListenOptions = {}) {
  const p = await tcpPair(client, server);
  cleanups.push(p.cleanup);
  return p;
}

function conn(end: End): { capabilities: number; sendStream(id: bigint, b: Buffer): boolean } {
  return (end as unknown as { conn: { capabilities: number; sendStream(id: bigint, b: Buffer): boolean } })
    .conn;
}

/** Writes `total` bytes (in 128 KiB chunks, honouring backpressure) and ends the stream. */
async function writeAll(writer: Stream, total: number): Promise<void> {
  const chunk = randomBytes(128 * KiB);
  for (let sent = 0; sent < total; sent += chunk.length) {
    if (!writer.write(chunk)) await new Promise((r) => writer.once('drain', r));
  }
  writer.end();
}

/** Counts the bytes `reader` carries to its end. */
async function countAll(reader: Stream): Promise<number> {
  let n = 0;
  for await (const c of reader as AsyncIterable<Buffer>) n += c.length;
  return n;
}

describe('flow-control extension', () => {
  it('is negotiated between geminio-node peers, and either side can decline it', async () => {
    const both = await pair();
    expect(conn(both.client).capabilities).toBe(Capability.FlowControl | Capability.RequestCancel);
    expect(conn(both.server).capabilities).toBe(Capability.FlowControl | Capability.RequestCancel);
    const off = await pair({ flowControl: false });
    expect(conn(off.client).capabilities).toBe(Capability.RequestCancel);
    expect(conn(off.server).capabilities).toBe(Capability.RequestCancel);
    const offServer = await pair({}, { flowControl: false });
    expect(conn(offServer.client).capabilities).toBe(Capability.RequestCancel);
  });

  it('one stalled reader does not hold up another stream on the same connection', {
    timeout: 60_000,
  }, async () => {
    // Counted, not timed (a speed ratio would be a benchmark): while one stream's window is spent and nobody reads
    // it, another stream on the same connection carries 128 windows' worth to its end. Without per-stream credit
    // the stalled stream's bytes would fill the connection and the other would stop with it.
    const a = await pair();
    const [aW, aR] = await Promise.all([a.client.openStream(), a.server.acceptStream()]);
    const [stuckW, stuckR] = await Promise.all([a.client.openStream(), a.server.acceptStream()]);
    const filler = randomBytes(64 * KiB);
    for (let i = 0; i < 8; i++) stuckW.write(filler); // twice its window, and nobody reads
    await waitUntil(() => stuckR.readableLength === WINDOW, 20_000, 'the stalled window full');
    expect(stuckW.writableNeedDrain).toBe(true); // its window is spent: it is stalled
    const total = 128 * WINDOW;
    const [, carried] = await Promise.all([writeAll(aW, total), countAll(aR)]);
    expect(carried).toBe(total);
    expect(stuckR.readableLength).toBe(WINDOW); // still stalled, still bounded
    expect(stuckW.writableNeedDrain).toBe(true);
  });

  it('a reader that never reads on 1,000 streams: writers see backpressure, receiver memory stays bounded', async () => {
    const { client, server } = await pair({}, { maxStreams: 2000, acceptBacklog: 2000 });
    const accepted: Stream[] = [];
    const acceptLoop = (async () => {
      for (let i = 0; i < 1000; i++) accepted.push(await server.acceptStream());
    })();
    const writers = await Promise.all(Array.from({ length: 1000 }, () => client.openStream()));
    await acceptLoop;
    // Each writer offers twice its window (the same chunk object, so the test itself allocates little).
    const chunk = randomBytes(64 * KiB);
    for (const w of writers) for (let i = 0; i < 8; i++) w.write(chunk);
    const held = () => accepted.reduce((sum, s) => sum + s.readableLength, 0);
    // Wait until the windows' worth has arrived: all of it, or no growth over five checks 100 ms apart (one check
    // without growth is not enough on a loaded machine).
    for (let last = -1, same = 0, t = 0; t < 400 && same < 5 && held() < 1000 * WINDOW; t++) {
      await delay(100);
      same = held() === last ? same + 1 : 0;
      last = held();
    }
    // Backpressure: every writer still holds what its window did not let through, and says so.
    expect(writers.every((w) => w.writableNeedDrain && w.writableLength >= WINDOW)).toBe(true);
    const buffered = held();
    // Everything the receiver holds is within the sum of the windows: the window let exactly that through.
    expect(buffered).toBeLessThanOrEqual(1000 * WINDOW);
    expect(buffered).toBeGreaterThanOrEqual(1000 * WINDOW * 0.9);
    // Reading one stream frees credit: its writer drains; the others stay held.
    const w0 = writers[0]!;
    const drained = new Promise((r) => w0.once('drain', r));
    accepted[0]!.resume();
    await drained;
    expect(writers[1]!.writableNeedDrain).toBe(true);
  }, 60_000);

  it('262,144 one-byte writes: the receiver holds at most 2x the window', async () => {
    const { client, server } = await pair();
    const [w, r] = await Promise.all([client.openStream(), server.acceptStream()]);
    const before = process.memoryUsage();
    const one = Buffer.from([7]);
    for (let i = 0; i < 262_144; i++) w.write(one);
    await delay(500);
    expect(r.readableLength).toBeLessThanOrEqual(WINDOW);
    const after = process.memoryUsage();
    const grown = after.arrayBuffers - before.arrayBuffers;
    expect(grown).toBeLessThanOrEqual(2 * WINDOW + 2 * MiB); // 2x window + the writer's own queue of 1-byte writes
    let total = 0;
    r.on('data', (c: Buffer) => {
      total += c.length;
    });
    await new Promise<void>((resolve) => {
      const check = () => (total >= 262_144 ? resolve() : setTimeout(check, 10));
      check();
    });
    expect(total).toBe(262_144);
  });

  it('a peer that sends past the window is closed with a protocol error', async () => {
    const { client, server } = await pair();
    const [w] = await Promise.all([client.openStream(), server.acceptStream()]);
    const closed = new Promise((r) => server.once('close', r));
    conn(client).sendStream(w.streamId, Buffer.alloc(WINDOW + 1)); // bypasses the window on purpose
    await closed;
    expect(server.closeError).toBeInstanceOf(ProtocolError);
  });
});

describe('limits', () => {
  it('1,001 opens against maxStreams 1,000: exactly one is refused, the rest work', async () => {
    const { client, server } = await pair({}, { maxStreams: 1000, acceptBacklog: 2000 });
    const results = await Promise.allSettled(Array.from({ length: 1001 }, () => client.openStream()));
    const refused = results.filter((r) => r.status === 'rejected');
    expect(refused).toHaveLength(1);
    expect((refused[0] as PromiseRejectedResult).reason).toBeInstanceOf(StreamRefusedError);
    // The connection and the other streams are unaffected.
    const first = (results.find((r) => r.status === 'fulfilled') as PromiseFulfilledResult<Stream>).value;
    const peer = await server.acceptStream();
    first.write('still works');
    const got = await new Promise<Buffer>((r) => peer.once('data', r));
    expect(got.toString()).toBe('still works');
    expect((await client.call('nope').catch((e) => e)).code).toBe('GEMINIO_ERR_NO_SUCH_METHOD');
  }, 60_000);

  it('calls and publishes beyond their limits reject with a typed error instead of queueing', async () => {
    const { client, server } = await pair({ maxPendingCalls: 2, maxPendingPublishes: 2 });
    await server.register('hang', () => new Promise(() => {}));
    const calls = [client.call('hang', '', { timeout: 2000 }), client.call('hang', '', { timeout: 2000 })];
    await expect(client.call('hang')).rejects.toBeInstanceOf(LimitExceededError);
    const pubs = [client.publish('a', { timeout: 2000 }), client.publish('b', { timeout: 2000 })];
    await expect(client.publish('c')).rejects.toBeInstanceOf(LimitExceededError);
    for (const p of [...calls, ...pubs]) p.catch(() => {});
  });
});

describe('RequestCancel between geminio-node peers', () => {
  it('aborting a call aborts the remote handler', async () => {
    const { client, server } = await pair();
    let aborted: unknown;
    let started: () => void = () => {};
    const handlerStarted = new Promise<void>((resolve) => {
      started = resolve;
    });
    await server.register('slow', ({ signal }) => {
      started();
      return new Promise((_r, reject) =>
        signal.addEventListener('abort', () => {
          aborted = signal.reason;
          reject(signal.reason);
        }),
      );
    });
    const ctl = new AbortController();
    const call = client.call('slow', '', { signal: ctl.signal });
    await handlerStarted;
    ctl.abort();
    await expect(call).rejects.toMatchObject({ code: 'GEMINIO_ERR_ABORTED' });
    // The RequestCancel crosses the connection after the local rejection: wait for it, however slow the machine.
    await waitUntil(() => aborted !== undefined, 10_000, 'the remote handler aborted');
    expect(aborted).toMatchObject({ code: 'GEMINIO_ERR_ABORTED' });
  });
});
