/** The connection's phases over a fake transport and a fake clock: handshake, DisConn exchange, protocol errors. */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { resolveLimits } from '../../../sdk/config.js';
import { Connection } from '../../../sdk/connection/connection.js';
import {
  ConnectionClosedError,
  HandshakeRejectedError,
  HandshakeTimeoutError,
  ProtocolError,
} from '../../../sdk/errors.js';
import { type ConnPacket, type Packet, RetCode, PacketType as T } from '../../../sdk/frame/index.js';
import { FakeTransport } from '../../helpers/fakes.js';

beforeEach(() => vi.useFakeTimers());
afterEach(() => vi.useRealTimers());

const limits = resolveLimits({ handshakeTimeout: 1000, closeTimeout: 2000, heartbeatInterval: 20_000 });

/** Lets corked writes out (they are released on setImmediate, which the fake clock holds). */
const flush = () => vi.advanceTimersByTimeAsync(0);

async function openClient() {
  const transport = new FakeTransport();
  const conn = new Connection({ role: 'client', transport, limits });
  const started = conn.start();
  await flush();
  const conn0 = transport.sent[0] as ConnPacket;
  transport.deliver({ type: T.ConnAck, id: conn0.id, retCode: RetCode.OK, clientId: 42n, data: {} });
  await started;
  return { conn, transport };
}

function closeEvent(conn: Connection): Promise<unknown> {
  return new Promise((resolve) => conn.once('close', resolve));
}

describe('Connection phases', () => {
  it('client handshake: Conn out, ConnAck in → open with the assigned ClientID', async () => {
    const { conn, transport } = await openClient();
    expect(transport.types()).toEqual([T.Conn]);
    expect(conn.phase).toBe('open');
    expect(conn.state).toBe('open');
    expect(conn.clientId).toBe(42n);
  });

  it('server handshake: Conn → deciding (while onConnect runs) → open, ConnAck out', async () => {
    const transport = new FakeTransport();
    let decide: (id: bigint) => void = () => {};
    const conn = new Connection({
      role: 'server',
      transport,
      limits,
      onConnect: () => new Promise<bigint>((r) => (decide = r)),
    });
    const started = conn.start();
    transport.deliver({ type: T.Conn, id: 1n, flags: 0, clientId: 0n, data: {} });
    expect(conn.phase).toBe('deciding');
    expect(conn.state).toBe('handshaking');
    await flush();
    decide(77n);
    await started;
    await flush();
    expect(conn.phase).toBe('open');
    expect(transport.sent[0]).toMatchObject({ type: T.ConnAck, clientId: 77n, retCode: RetCode.OK });
  });

  it('a second Conn while deciding is a protocol error', async () => {
    const transport = new FakeTransport();
    const conn = new Connection({
      role: 'server',
      transport,
      limits,
      onConnect: () => new Promise(() => {}),
    });
    const started = conn.start().catch((e: unknown) => e);
    transport.deliver({ type: T.Conn, id: 1n, flags: 0, clientId: 0n, data: {} });
    transport.deliver({ type: T.Conn, id: 2n, flags: 0, clientId: 0n, data: {} });
    expect(await started).toBeInstanceOf(ProtocolError);
    expect(conn.phase).toBe('closed');
  });

  it('the handshake times out after handshakeTimeout', async () => {
    const conn = new Connection({ role: 'client', transport: new FakeTransport(), limits });
    const started = conn.start().catch((e: unknown) => e);
    await vi.advanceTimersByTimeAsync(999);
    expect(conn.phase).toBe('handshaking');
    await vi.advanceTimersByTimeAsync(1);
    expect(await started).toBeInstanceOf(HandshakeTimeoutError);
  });

  it('an error ConnAck rejects the handshake', async () => {
    const transport = new FakeTransport();
    const conn = new Connection({ role: 'client', transport, limits });
    const started = conn.start().catch((e: unknown) => e);
    await flush();
    transport.deliver({ type: T.ConnAck, id: 1n, retCode: RetCode.ERR, clientId: 0n, data: { error: 'no' } });
    expect(await started).toBeInstanceOf(HandshakeRejectedError);
  });

  it('we close: closing → closingAcked → closed, then the socket ends cleanly', async () => {
    const { conn, transport } = await openClient();
    const closed = closeEvent(conn);
    const done = conn.close();
    await flush();
    expect(conn.phase).toBe('closing');
    expect(transport.types().at(-1)).toBe(T.DisConn);
    transport.deliver({ type: T.DisConnAck, id: transport.sent.at(-1)!.id, retCode: RetCode.OK, data: {} });
    expect(conn.phase).toBe('closingAcked');
    transport.deliver({ type: T.DisConn, id: 900n });
    expect(conn.phase).toBe('closed');
    await flush();
    expect(transport.sent.at(-1)).toMatchObject({ type: T.DisConnAck, id: 900n });
    transport.destroy();
    await done;
    expect(await closed).toBeUndefined();
    expect(conn.phase).toBe('gone');
  });

  it('the peer closes: closingPeerDone until our DisConn is acknowledged', async () => {
    const { conn, transport } = await openClient();
    transport.deliver({ type: T.DisConn, id: 900n });
    await flush();
    expect(conn.phase).toBe('closingPeerDone');
    const sent = transport.types().slice(-2);
    expect(sent).toEqual([T.DisConnAck, T.DisConn]);
    transport.deliver({ type: T.DisConn, id: 901n }); // repeated: acknowledged again
    expect(conn.phase).toBe('closingPeerDone');
    transport.deliver({ type: T.DisConnAck, id: transport.sent.at(-1)!.id, retCode: RetCode.OK, data: {} });
    expect(conn.phase).toBe('closed');
  });

  it('a DisConnAck for a DisConn we never sent is a protocol error', async () => {
    const { conn, transport } = await openClient();
    const closed = closeEvent(conn);
    transport.deliver({ type: T.DisConnAck, id: 5n, retCode: RetCode.OK, data: {} });
    expect(conn.phase).toBe('closed');
    expect(conn.closeError).toBeInstanceOf(ProtocolError);
    await flush();
    // Like Go: a DisConn tells the peer to close.
    expect(transport.types()).toContain(T.DisConn);
    transport.destroy();
    expect(await closed).toBeInstanceOf(ProtocolError);
  });

  it('a peer that never finishes the close exchange is dropped after closeTimeout', async () => {
    const { conn, transport } = await openClient();
    const closed = closeEvent(conn);
    void conn.close();
    await vi.advanceTimersByTimeAsync(1999);
    expect(conn.phase).toBe('closing');
    await vi.advanceTimersByTimeAsync(1);
    expect(conn.state).toBe('closed');
    expect(conn.closeError).toBeInstanceOf(ConnectionClosedError);
    expect(transport.destroyed).toBe(true);
    expect(await closed).toBeInstanceOf(ConnectionClosedError);
  });

  it('an open client sends a Heartbeat every heartbeatInterval, each with a fresh PacketID', async () => {
    const { conn, transport } = await openClient();
    const heartbeats = () => transport.sent.filter((p) => p.type === T.Heartbeat);
    // A write made while the fake clock ticks is released 1 ms later (its setImmediate lands on the next ms).
    await vi.advanceTimersByTimeAsync(19_999);
    expect(heartbeats()).toHaveLength(0);
    for (let n = 1; n <= 3; n++) {
      await vi.advanceTimersByTimeAsync(n === 1 ? 2 : 20_000);
      expect(heartbeats()).toHaveLength(n);
      transport.deliver({ type: T.HeartbeatAck, id: heartbeats()[n - 1]!.id });
    }
    expect(new Set(heartbeats().map((p) => p.id)).size).toBe(3);
    expect(conn.state).toBe('open');
    conn.destroy();
  });

  it('hands every non-connection packet to the layer above, early ones included', async () => {
    const { conn, transport } = await openClient();
    const early: Packet = { type: T.Dismiss, id: 3n, sessionId: 9n, data: {} };
    transport.deliver(early);
    const got: Packet[] = [];
    conn.attach((p) => got.push(p));
    transport.deliver({ type: T.Heartbeat, id: 4n }); // connection-level: not handed up
    expect(got.map((p) => p.type)).toEqual([T.Dismiss]);
  });
});
