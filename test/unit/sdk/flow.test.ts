/** Per-stream window accounting over a fake connection. */
import { describe, expect, it } from 'vitest';
import { resolveLimits } from '../../../sdk/config.js';
import type { Connection } from '../../../sdk/connection/connection.js';
import { ProtocolError } from '../../../sdk/errors.js';
import { EXTENSION_INITIAL_WINDOW, type Packet, PacketType as T } from '../../../sdk/frame/index.js';
import { StreamFlow } from '../../../sdk/stream/flow.js';
import { decodeFrame } from '../../helpers/fakes.js';

/** The parts of a Connection StreamFlow uses, recording what goes out. */
function fakeConn(overrides: Record<string, number> = {}) {
  const sent: Packet[] = [];
  const payloads: number[] = [];
  let grown = 0;
  let id = 0n;
  const conn = {
    limits: resolveLimits({ initialWindow: EXTENSION_INITIAL_WINDOW, ...overrides }),
    ids: { next: () => ++id },
    send: (frame: Buffer) => {
      sent.push(decodeFrame(frame));
      return true;
    },
    sendStream: (_id: bigint, payload: Buffer) => {
      payloads.push(payload.length);
      return true;
    },
    reserveWindow: (n: number) => {
      if (grown + n > conn.limits.maxConnectionWindow) return false;
      grown += n;
      return true;
    },
    releaseWindow: (n: number) => {
      grown -= n;
    },
  };
  const updates = () =>
    sent.filter((p) => p.type === T.WindowUpdate).map((p) => (p as { increment: number }).increment);
  return { conn: conn as unknown as Connection, payloads, updates, grown: () => grown };
}

const W = EXTENSION_INITIAL_WINDOW;

describe('StreamFlow', () => {
  it('sends up to the window, holds the rest until WindowUpdate, then finishes the write', () => {
    const { conn, payloads } = fakeConn();
    const counted: number[] = [];
    const flow = new StreamFlow(conn, 3n, (n) => counted.push(n));
    let done = 0;
    flow.send(Buffer.alloc(W + 1000), () => done++);
    expect(payloads.reduce((a, b) => a + b, 0)).toBe(W);
    expect(done).toBe(0);
    flow.onWindowUpdate(600);
    expect(done).toBe(0);
    flow.onWindowUpdate(400);
    expect(done).toBe(1);
    expect(payloads.reduce((a, b) => a + b, 0)).toBe(W + 1000);
    expect(counted.reduce((a, b) => a + b, 0)).toBe(W + 1000);
  });

  it('grants credit back once half a window is consumed, not per read', () => {
    const { conn, updates } = fakeConn();
    const flow = new StreamFlow(conn, 3n);
    flow.onData(W);
    flow.onConsumed(W / 2 - 1, W);
    expect(updates()).toEqual([]);
    flow.onConsumed(1, W / 2);
    expect(updates()).toEqual([W / 2]);
  });

  it('a peer that sends past the window breaks the rules', () => {
    const { conn } = fakeConn();
    const flow = new StreamFlow(conn, 3n);
    flow.onData(W);
    expect(() => flow.onData(1)).toThrow(ProtocolError);
  });

  it('bytes dropped unread give their credit back at once', () => {
    const { conn, updates } = fakeConn();
    const flow = new StreamFlow(conn, 3n);
    flow.onData(1000);
    flow.discarded(1000);
    expect(updates()).toEqual([1000]);
  });

  it('a starved sender with an empty buffer doubles the window, within the connection budget; release gives it back', () => {
    const { conn, updates, grown } = fakeConn({ maxWindow: 4 * W, maxConnectionWindow: 16 * W });
    const flow = new StreamFlow(conn, 3n);
    flow.onData(W);
    flow.onConsumed(W, 0);
    expect(updates()).toEqual([2 * W]);
    expect(grown()).toBe(W);
    flow.release();
    expect(grown()).toBe(0);
  });

  it('a write waiting for credit fails when the stream gives up on it', () => {
    const { conn } = fakeConn();
    const flow = new StreamFlow(conn, 3n);
    const results: Array<Error | undefined> = [];
    flow.send(Buffer.alloc(W + 1), (err) => results.push(err));
    flow.release();
    expect(results).toHaveLength(1);
    expect(results[0]).toBeInstanceOf(Error);
  });
});
