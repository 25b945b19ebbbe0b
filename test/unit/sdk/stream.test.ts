/** The stream core's Dismiss exchange over a fake connection and a fake clock. */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { resolveLimits } from '../../../sdk/config.js';
import type { Connection } from '../../../sdk/connection/connection.js';
import { ProtocolError, StreamClosedError } from '../../../sdk/errors.js';
import { type Packet, PacketType as T } from '../../../sdk/frame/index.js';
import { StreamCore } from '../../../sdk/stream/core.js';
import { decodeFrame } from '../../helpers/fakes.js';

beforeEach(() => vi.useFakeTimers());
afterEach(() => vi.useRealTimers());

/** A connection as the stream core sees it; `peerOrdersDismiss` false is a Go peer. */
function fakeConn(peerOrdersDismiss: boolean) {
  const sent: Packet[] = [];
  const data: Buffer[] = [];
  let id = 1000n;
  const conn = {
    limits: resolveLimits({ closeTimeout: 5000, dismissGrace: 200 }),
    flowControl: false,
    peerOrdersDismiss,
    state: 'open',
    closeError: undefined,
    clientId: 9n,
    needsDrain: false,
    ids: { next: () => ++id },
    send: (frame: Buffer) => {
      sent.push(decodeFrame(frame));
      return true;
    },
    sendStream: (_id: bigint, payload: Buffer) => {
      data.push(Buffer.from(payload));
      return true;
    },
    waitDrain: (cb: () => void) => process.nextTick(cb),
    pauseReading: () => {},
    resumeReading: () => {},
    addBuffered: () => {},
    releaseBuffered: () => {},
  };
  return { conn: conn as unknown as Connection, sent, data };
}

function stream(peerOrdersDismiss = true, allowHalfOpen = false) {
  const fake = fakeConn(peerOrdersDismiss);
  const finalized: StreamCore[] = [];
  const s = new StreamCore({
    conn: fake.conn,
    streamId: 5n,
    meta: Buffer.alloc(0),
    peer: undefined,
    allowHalfOpen,
    onFinalized: (x) => finalized.push(x),
  });
  return { s, finalized, ...fake };
}

const dismisses = (sent: Packet[]) => sent.filter((p) => p.type === T.Dismiss);

describe('StreamCore close exchange', () => {
  it('we close first: open → dismissSent → dismissAcked → finalized', async () => {
    const { s, sent, data, finalized } = stream();
    s.end('bye');
    await vi.advanceTimersByTimeAsync(0);
    expect(Buffer.concat(data).toString()).toBe('bye');
    expect(s.exchangeState).toBe('dismissSent');
    const ours = dismisses(sent)[0]!;
    s.receiveDismissAck();
    expect(s.exchangeState).toBe('dismissAcked');
    s.receiveDismiss(77n);
    expect(sent.at(-1)).toMatchObject({ type: T.DismissAck, id: 77n, sessionId: 5n });
    expect(s.exchangeState).toBe('finalized');
    expect(finalized).toEqual([s]);
    expect(ours.id).not.toBe(77n);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('the peer closes first: we answer at once (geminio-node peer) and end the readable side', async () => {
    const { s, sent } = stream(true);
    const ended = new Promise((r) => s.once('end', r));
    s.resume();
    s.receiveData(Buffer.from('last'));
    s.receiveDismiss(1n);
    await vi.advanceTimersByTimeAsync(0);
    expect(dismisses(sent)).toHaveLength(1);
    expect(s.exchangeState).toBe('bothDismissed');
    await ended;
    s.receiveDismissAck();
    expect(s.exchangeState).toBe('finalized');
  });

  it("a Go peer's Dismiss: data after it is still delivered, and we answer after dismissGrace", async () => {
    const { s, sent } = stream(false);
    const chunks: Buffer[] = [];
    s.on('data', (c: Buffer) => chunks.push(c));
    s.receiveDismiss(1n);
    s.receiveData(Buffer.from('overtaken'));
    await vi.advanceTimersByTimeAsync(199);
    expect(dismisses(sent)).toHaveLength(0);
    await vi.advanceTimersByTimeAsync(1);
    expect(dismisses(sent)).toHaveLength(1);
    expect(Buffer.concat(chunks).toString()).toBe('overtaken');
    s.receiveDismissAck();
    expect(s.exchangeState).toBe('finalized');
  });

  it('a DismissAck for a Dismiss we never sent is a protocol error', () => {
    const { s } = stream(true, true);
    expect(() => s.receiveDismissAck()).toThrow(ProtocolError);
    s.receiveDismiss(1n); // half-open: we have not answered
    expect(s.exchangeState).toBe('dismissReceived');
    expect(() => s.receiveDismissAck()).toThrow(ProtocolError);
  });

  it('a repeated Dismiss is acknowledged again and changes nothing', async () => {
    const { s, sent } = stream(true, true);
    s.receiveDismiss(1n);
    s.receiveDismiss(2n);
    expect(sent.filter((p) => p.type === T.DismissAck).map((p) => p.id)).toEqual([1n, 2n]);
    expect(s.exchangeState).toBe('dismissReceived');
  });

  it('a peer that never answers: the stream is abandoned after closeTimeout and fails', async () => {
    const { s, finalized } = stream();
    const errors: Error[] = [];
    s.on('error', (e) => errors.push(e));
    s.end();
    await vi.advanceTimersByTimeAsync(4999);
    expect(finalized).toEqual([]);
    await vi.advanceTimersByTimeAsync(1);
    expect(finalized).toEqual([s]);
    expect(s.exchangeState).toBe('finalized');
    expect(errors[0]).toBeInstanceOf(StreamClosedError);
    // A late DismissAck after we gave up is ignored.
    expect(() => s.receiveDismissAck()).not.toThrow();
  });

  it('half-open: the peer dismissed, we keep writing until end()', async () => {
    const { s, sent, data } = stream(true, true);
    s.resume();
    s.receiveDismiss(1n);
    await vi.advanceTimersByTimeAsync(0);
    expect(dismisses(sent)).toHaveLength(0);
    s.write('more');
    s.end();
    await vi.advanceTimersByTimeAsync(0);
    expect(Buffer.concat(data).toString()).toBe('more');
    expect(dismisses(sent)).toHaveLength(1);
    s.receiveDismissAck();
    expect(s.exchangeState).toBe('finalized');
  });
});
