/**
 * Property: a close exchange always ends. Random interleavings of write / end / destroy / read / connection loss
 * on both sides of a few streams (each side's end and destroy is the other's "peer Dismiss" and "peer destroy"),
 * with windows run down to zero and writes waiting for credit, under a fake clock. Checked after every step: a
 * stream is finalized on a side once closeTimeout has passed since the first Dismiss that side sent or received.
 * At the end: every write callback was called, and the connections are back to their baseline (no streams left
 * in the table, no bytes counted as buffered, no window growth, no pauses, no timers beyond the connection's own).
 *
 * Runs with and without the flow-control extension (without it, the stream behaves as it does with a Go peer).
 */
import { setImmediate as immediate } from 'node:timers/promises';
import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { PacketType as T } from '../../sdk/frame/constants.js';
import type { Packet } from '../../sdk/frame/packet.js';
import { clientEnd, type End, type Stream, serverEnd } from '../../sdk/index.js';
import { duplexPair } from '../helpers/pair.js';

const CLOSE_TIMEOUT = 100;
const STREAMS = 3;
const KiB = 1024;

type Side = 0 | 1;
type Action =
  | { op: 'write'; side: Side; i: number; size: number }
  | { op: 'end' | 'destroy' | 'read' | 'flow'; side: Side; i: number }
  | { op: 'loss' }
  | { op: 'tick'; ms: number };

const side = fc.constantFrom<Side>(0, 1);
const index = fc.integer({ min: 0, max: STREAMS - 1 });
const action: fc.Arbitrary<Action> = fc.oneof(
  {
    weight: 5,
    arbitrary: fc.record({
      op: fc.constant('write' as const),
      side,
      i: index,
      // Up to past the 256 KiB initial window: such a write waits for credit.
      size: fc.constantFrom(1, 16 * KiB, 200 * KiB, 300 * KiB),
    }),
  },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('end' as const), side, i: index }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('destroy' as const), side, i: index }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('read' as const), side, i: index }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('flow' as const), side, i: index }) },
  { weight: 1, arbitrary: fc.constant({ op: 'loss' as const }) },
  {
    weight: 3,
    arbitrary: fc.record({ op: fc.constant('tick' as const), ms: fc.integer({ min: 0, max: 80 }) }),
  },
);

/** Lets the in-memory transport, nextTicks and uncorks run (the fake clock does not move meanwhile). */
async function settle(): Promise<void> {
  for (let k = 0; k < 30; k++) await immediate();
}

interface Tracked {
  stream: Stream;
  /** Fake-clock time of the first Dismiss this side sent or received on the stream. */
  firstDismiss: number | undefined;
}

interface Conn {
  bufferedBytes: number;
  grownWindow: number;
  pausers: Set<unknown>;
}

async function run(actions: Action[], flowControl: boolean, halfOpen: boolean[]): Promise<void> {
  const [a, b] = duplexPair();
  const limits = { flowControl, closeTimeout: CLOSE_TIMEOUT };
  const [client, server] = await Promise.all([clientEnd(a, limits), serverEnd(b, limits)]);
  const ends: [End, End] = [client, server];
  const tracked: [Tracked[], Tracked[]] = [[], []];
  let writes = 0;
  let callbacks = 0;
  // Dismisses each side receives, by stream ID.
  const received: [Map<bigint, number>, Map<bigint, number>] = [new Map(), new Map()];
  for (const s of [0, 1] as const) {
    const mux = ends[s].session;
    const handle = mux.handlePacket.bind(mux);
    mux.handlePacket = (p: Packet) => {
      if (p.type === T.Dismiss && !received[s].has(p.sessionId)) received[s].set(p.sessionId, Date.now());
      handle(p);
    };
    ends[s].on('error', () => {});
  }
  const track = (s: Side, stream: Stream) => {
    const t: Tracked = { stream, firstDismiss: undefined };
    stream.on('error', () => {});
    const send = stream.sendDismiss.bind(stream);
    stream.sendDismiss = () => {
      t.firstDismiss ??= Date.now();
      send();
    };
    tracked[s].push(t);
  };
  // Two streams opened by the client, one by the server; each half-open or not on each side.
  for (let i = 0; i < STREAMS; i++) {
    const opener: Side = i < 2 ? 0 : 1;
    const other: Side = opener === 0 ? 1 : 0;
    const accepted = ends[other].acceptStream({ allowHalfOpen: halfOpen[i * 2 + 1] });
    const opened = await ends[opener].openStream({ allowHalfOpen: halfOpen[i * 2] });
    track(opener, opened);
    track(other, await accepted);
  }
  // Align the two lists: index i is the same stream on both sides.
  tracked[1].sort((x, y) => Number(x.stream.streamId - y.stream.streamId));
  tracked[0].sort((x, y) => Number(x.stream.streamId - y.stream.streamId));
  await settle();
  const baselineTimers = vi.getTimerCount();

  const check = () => {
    for (const s of [0, 1] as const) {
      for (const t of tracked[s]) {
        const got = received[s].get(t.stream.streamId);
        const first = Math.min(t.firstDismiss ?? Infinity, got ?? Infinity);
        if (Number.isFinite(first) && Date.now() - first >= CLOSE_TIMEOUT) {
          expect(t.stream.isFinalized, `side ${s} stream ${t.stream.streamId} past closeTimeout`).toBe(true);
        }
      }
    }
  };

  for (const act of actions) {
    if (act.op === 'tick') {
      await vi.advanceTimersByTimeAsync(act.ms);
    } else if (act.op === 'loss') {
      a.destroy();
    } else {
      const stream = tracked[act.side][act.i]!.stream;
      switch (act.op) {
        case 'write':
          if (!stream.destroyed && !stream.writableEnded) {
            writes++;
            stream.write(Buffer.alloc(act.size), () => {
              callbacks++;
            });
          }
          break;
        case 'end':
          if (!stream.destroyed) stream.end();
          break;
        case 'destroy':
          stream.destroy();
          break;
        case 'read':
          while (stream.read() !== null) {}
          break;
        case 'flow':
          stream.resume();
          break;
      }
    }
    await settle();
    check();
  }

  // Readers read everything, whatever is still open is ended on one side, and the clock runs: everything must
  // finalize. (Without a Dismiss nothing bounds a writer waiting for a reader that never reads: backpressure.)
  for (const s of [0, 1] as const) for (const t of tracked[s]) t.stream.resume();
  for (const t of tracked[0]) if (!t.stream.destroyed) t.stream.end();
  await settle();
  check();
  for (let k = 0; k < 3; k++) {
    await vi.advanceTimersByTimeAsync(CLOSE_TIMEOUT);
    await settle();
    check();
  }
  for (const s of [0, 1] as const) {
    for (const t of tracked[s])
      expect(t.stream.isFinalized, `side ${s} stream ${t.stream.streamId}`).toBe(true);
  }
  // Handles and buffers back to baseline. Unread data may stay readable in a finalized stream, but no longer
  // counts against the connection.
  for (const s of [0, 1] as const) {
    const end = ends[s];
    const conn = end.conn as unknown as Conn;
    expect([...end.session.streams.keys()].filter((id) => id !== 1n)).toEqual([]);
    expect(conn.bufferedBytes).toBe(0);
    expect(conn.grownWindow).toBe(0);
    expect([...conn.pausers].filter((p) => p !== end.channel.messaging)).toEqual([]);
  }
  // Streams that never ended cleanly are destroyed; a destroyed stream calls back every write it holds.
  for (const s of [0, 1] as const) for (const t of tracked[s]) t.stream.destroy();
  await settle();
  expect(callbacks).toBe(writes);
  expect(vi.getTimerCount()).toBeLessThanOrEqual(baselineTimers);
  client.destroy();
  server.destroy();
  await settle();
}

beforeEach(() => {
  // Only the clock is fake: setImmediate and nextTick stay real so the in-memory transport moves.
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'Date'] });
});
afterEach(() => {
  vi.useRealTimers();
});

describe('a close exchange always ends', () => {
  it.each([
    ['with the flow-control extension', true],
    ['without it (as with a Go peer)', false],
  ])(
    '%s: every stream finalizes within closeTimeout, and nothing leaks',
    async (_name, flowControl) => {
      await fc.assert(
        fc.asyncProperty(
          fc.array(action, { minLength: 1, maxLength: 30 }),
          fc.array(fc.boolean(), { minLength: STREAMS * 2, maxLength: STREAMS * 2 }),
          (actions, halfOpen) => run(actions, flowControl, halfOpen),
        ),
        { numRuns: 400 },
      );
    },
    120_000,
  );
});

describe('a peer that destroys its side', () => {
  it.each([
    ['with the flow-control extension', true],
    ['without it', false],
  ])(
    '%s: our write waiting for credit completes, the exchange ends without waiting for closeTimeout, later writes are discarded with StreamClosedError',
    async (_name, flowControl) => {
      const [a, b] = duplexPair();
      // The clock never moves in this test: only the exchange itself can finalize the streams.
      const limits = { flowControl, closeTimeout: 60_000 };
      const [client, server] = await Promise.all([clientEnd(a, limits), serverEnd(b, limits)]);
      const accepted = server.acceptStream();
      const ours = await client.openStream();
      const theirs = await accepted;
      let called: Error | null | undefined | 'no' = 'no';
      // Past the 256 KiB window (and past the high-water mark without flow control): the reader never reads.
      ours.write(Buffer.alloc(600 * KiB), (err) => {
        called = err;
      });
      await settle();
      if (flowControl) expect(called).toBe('no'); // waiting for credit
      theirs.destroy();
      await settle();
      expect(called ?? undefined).toBeUndefined(); // called, without an error
      expect(ours.isFinalized).toBe(true);
      expect(theirs.isFinalized).toBe(true);
      let late: Error | null | undefined;
      const errors: Error[] = [];
      ours.on('error', (e) => errors.push(e));
      ours.write('late', (err) => {
        late = err;
      });
      await settle();
      expect(late?.name).toBe('StreamClosedError');
      expect(errors).toEqual([]);
      client.destroy();
      server.destroy();
    },
  );
});
