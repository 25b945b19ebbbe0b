/**
 * Heartbeats and liveness, observed on the wire: a fake server (node:net + FrameDecoder) counts the client's
 * Heartbeats and reads its Conn flags, or stops answering; a raw client never sends heartbeats to a real server.
 */
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import {
  encodePacket,
  FrameDecoder,
  HEADER_LENGTH,
  type Packet,
  PacketType as T,
} from '../../sdk/frame/index.js';
import { dial, type End, HeartbeatTimeoutError, listen } from '../../sdk/index.js';
import { delay, waitUntil } from '../helpers/wait.js';

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** Resolves when the End has closed, with how long that took from `since`; rejects after `timeout` ms. */
function endClosed(end: End, timeout: number): Promise<void> {
  return new Promise((resolve, reject) => {
    if (end.closed) return resolve();
    const timer = setTimeout(() => reject(new Error(`End still open after ${timeout} ms`)), timeout);
    end.once('close', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

interface FakeConnection {
  socket: net.Socket;
  packets: Packet[];
  /** Every byte received, in order. */
  raw: Buffer[];
  heartbeats: number;
}

/**
 * A fake geminio server: answers Conn with ConnAck (ClientID 0x77) and, unless `blackhole` is set, Heartbeats
 * with HeartbeatAcks and Registers with RegisterAcks. With `blackhole`, after the ConnAck it reads and discards
 * everything and keeps the socket open.
 */
async function fakeServer(
  options: { blackhole?: boolean } = {},
): Promise<{ port: number; connections: FakeConnection[] }> {
  const connections: FakeConnection[] = [];
  const server = net.createServer((socket) => {
    const c: FakeConnection = { socket, packets: [], raw: [], heartbeats: 0 };
    connections.push(c);
    const decoder = new FrameDecoder();
    socket.on('error', () => {});
    socket.on('data', (chunk: Buffer) => {
      c.raw.push(chunk);
      decoder.push(chunk, (p) => {
        c.packets.push(p);
        if (p.type === T.Conn) {
          socket.write(encodePacket({ type: T.ConnAck, id: p.id, retCode: 0, clientId: 0x77n, data: {} }));
          return;
        }
        if (options.blackhole) return;
        if (p.type === T.Heartbeat) {
          c.heartbeats++;
          socket.write(encodePacket({ type: T.HeartbeatAck, id: p.id }));
        } else if (p.type === T.Register) {
          socket.write(encodePacket({ type: T.RegisterAck, id: p.id, sessionId: p.sessionId, data: {} }));
        }
      });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanups.push(
    () =>
      new Promise<void>((resolve) => {
        for (const c of connections) c.socket.destroy();
        server.close(() => resolve());
      }),
  );
  return { port: (server.address() as net.AddressInfo).port, connections };
}

async function dialTracked(port: number, options: Parameters<typeof dial>[1] = {}): Promise<End> {
  const end = await dial({ host: '127.0.0.1', port }, options);
  cleanups.push(() => end.destroy());
  return end;
}

/** The Conn frame's flags byte, read from the raw bytes the fake server received (body offset 0). */
function connFlagsByte(c: FakeConnection): number {
  const bytes = Buffer.concat(c.raw);
  expect(bytes[1]).toBe(T.Conn);
  return bytes[HEADER_LENGTH]!;
}

/** A raw client that completes the handshake (flags 0x18) against a real server. */
async function rawHandshake(port: number): Promise<{ socket: net.Socket; packets: Packet[] }> {
  const socket = net.connect({ host: '127.0.0.1', port });
  socket.on('error', () => {});
  cleanups.push(() => socket.destroy());
  const packets: Packet[] = [];
  const decoder = new FrameDecoder();
  socket.on('data', (chunk: Buffer) => decoder.push(chunk, (p) => packets.push(p)));
  await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
  socket.write(encodePacket({ type: T.Conn, id: 0x42n, flags: 0x18, clientId: 0n, data: {} }));
  await waitUntil(() => packets.some((p) => p.type === T.ConnAck), 3000);
  return { socket, packets };
}

/** Blocks the event loop for `ms`, the way a long GC pause or a starved CPU does. */
function stall(ms: number): void {
  const until = Date.now() + ms;
  while (Date.now() < until) {}
}

describe('client heartbeats', () => {
  it('a client with heartbeatInterval 100 sends Heartbeats, each with a fresh PacketID', async () => {
    const { port, connections } = await fakeServer();
    const end = await dialTracked(port, { heartbeatInterval: 100 });
    const c = connections[0]!;
    // The schedule itself (one per interval) is pinned on a fake clock in test/unit/sdk/connection.test.ts; over a
    // real socket on a loaded machine, timers run late, so this only bounds the wait: the 20 s default interval
    // would send none within it.
    await waitUntil(() => c.heartbeats >= 3 || end.destroyed, 10_000, 'three Heartbeats');
    expect(end.closeError).toBeUndefined();
    expect(c.heartbeats).toBeGreaterThanOrEqual(3);
    const hbs = c.packets.filter((p) => p.type === T.Heartbeat);
    expect(new Set(hbs.map((p) => p.id)).size).toBe(hbs.length); // a fresh PacketID each time
    expect(end.closeError).toBeUndefined();
    expect(end.destroyed).toBe(false);
  });

  it('the Conn flags byte declares the heartbeat code: 0x08 for 100 ms, 0x18 by default', async () => {
    const cases: Array<[number | undefined, number]> = [
      [100, 0x08 | (0 << 4)],
      [undefined, 0x18],
      [5_000, 0x08],
      [5_001, 0x18],
      [20_000, 0x18],
      [80_000, 0x28],
      [320_000, 0x38],
    ];
    for (const [interval, flags] of cases) {
      const { port, connections } = await fakeServer();
      const end = await dialTracked(port, interval === undefined ? {} : { heartbeatInterval: interval });
      const c = connections[0]!;
      expect(connFlagsByte(c), `heartbeatInterval ${interval}`).toBe(flags);
      expect(c.packets[0]).toMatchObject({ type: T.Conn, flags, clientId: 0n });
      end.destroy();
    }
  });

  it('a silent server: the client closes with HeartbeatTimeoutError (interval 100, timeout 300)', async () => {
    const { port, connections } = await fakeServer({ blackhole: true });
    const started = Date.now();
    const end = await dialTracked(port, { heartbeatInterval: 100, heartbeatTimeout: 300 });
    // Not before the timeout; after it, within a wait far below the 40 s default timeout (the exact moment is the
    // fake-clock unit test's, test/unit/sdk/liveness.test.ts).
    await endClosed(end, 10_000);
    expect(Date.now() - started).toBeGreaterThanOrEqual(300);
    expect(end.closeError).toBeInstanceOf(HeartbeatTimeoutError);
    expect(end.closeError?.code).toBe('GEMINIO_ERR_HEARTBEAT_TIMEOUT');
    // It kept sending Heartbeats into the void until then.
    expect(connections[0]!.packets.some((p) => p.type === T.Heartbeat)).toBe(true);
  });
});

describe('server liveness', () => {
  it('a real server with heartbeatTimeout 300: a client that never sends heartbeats is dropped with HeartbeatTimeoutError', async () => {
    const listener = await listen('127.0.0.1:0', { heartbeatTimeout: 300 });
    cleanups.push(() => listener.close());
    const started = Date.now();
    const { socket } = await rawHandshake(listener.address().port);
    const end = await listener.acceptEnd();
    cleanups.push(() => end.destroy());
    await endClosed(end, 10_000); // far below the 40 s the declared 20 s interval would give
    expect(Date.now() - started).toBeGreaterThanOrEqual(300);
    expect(end.closeError).toBeInstanceOf(HeartbeatTimeoutError);
    expect(end.closeError?.code).toBe('GEMINIO_ERR_HEARTBEAT_TIMEOUT');
    await waitUntil(() => socket.readableEnded || socket.destroyed, 3000);
  });

  it('the same server keeps a raw client that sends a Heartbeat every 100 ms, and acks each one', async () => {
    const listener = await listen('127.0.0.1:0', { heartbeatTimeout: 300 });
    cleanups.push(() => listener.close());
    const { socket, packets } = await rawHandshake(listener.address().port);
    const end = await listener.acceptEnd();
    cleanups.push(() => end.destroy());
    let id = 0x1000n;
    const timer = setInterval(() => socket.write(encodePacket({ type: T.Heartbeat, id: id++ })), 100);
    cleanups.push(() => clearInterval(timer));
    // Counted, not timed: nine acks span at least 900 ms (three timeouts) however slowly the timers run.
    const acked = () => packets.filter((p) => p.type === T.HeartbeatAck).length;
    await waitUntil(() => acked() >= 9 || end.destroyed, 20_000, 'nine HeartbeatAcks');
    expect(end.closeError).toBeUndefined();
    expect(end.destroyed).toBe(false);
    const acks = packets.filter((p) => p.type === T.HeartbeatAck);
    expect(acks.length).toBeGreaterThanOrEqual(9);
    for (const [i, a] of acks.entries()) expect(a.id).toBe(0x1000n + BigInt(i));
  });
});

describe('liveness after this process stalls', () => {
  it('a Heartbeat that arrived during a stall longer than heartbeatTimeout keeps the peer alive', async () => {
    const listener = await listen('127.0.0.1:0', { heartbeatTimeout: 300 });
    cleanups.push(() => listener.close());
    const { socket } = await rawHandshake(listener.address().port);
    const end = await listener.acceptEnd();
    cleanups.push(() => end.destroy());
    // The peer is alive: its Heartbeat is in this process's socket buffer before the stall ends. The liveness
    // check, overdue, runs before that socket is read; it must look at what is pending before calling it dead.
    socket.write(encodePacket({ type: T.Heartbeat, id: 0x2000n }));
    stall(600);
    let id = 0x2001n;
    const timer = setInterval(() => socket.write(encodePacket({ type: T.Heartbeat, id: id++ })), 50);
    cleanups.push(() => clearInterval(timer));
    await delay(200);
    expect(end.closeError).toBeUndefined();
    expect(end.destroyed).toBe(false);
  });

  it('a client End whose server answered during a stall stays connected', async () => {
    const { port, connections } = await fakeServer();
    const end = await dialTracked(port, { heartbeatInterval: 100, heartbeatTimeout: 300 });
    // Right after the handshake, before anything else is read: the fake server (in this same process) answers
    // by hand, then the process stalls.
    connections[0]!.socket.write(encodePacket({ type: T.HeartbeatAck, id: 0x2000n }));
    stall(600);
    await delay(200);
    expect(end.closeError).toBeUndefined();
    expect(end.destroyed).toBe(false);
  });
});

describe('client and server with 100 ms heartbeats', () => {
  it('stay connected for 1 s, past many intervals, and an RPC works at the end', async () => {
    const listener = await listen('127.0.0.1:0', { heartbeatTimeout: 300 });
    cleanups.push(() => listener.close());
    const [client, server] = await Promise.all([
      dial(listener.address(), { heartbeatInterval: 100 }),
      listener.acceptEnd(),
    ]);
    cleanups.push(
      () => client.destroy(),
      () => server.destroy(),
    );
    await server.register('ping', () => 'pong');
    await delay(1000);
    expect(client.closeError).toBeUndefined();
    expect(server.closeError).toBeUndefined();
    expect(client.destroyed).toBe(false);
    expect(server.destroyed).toBe(false);
    expect((await client.call('ping', '', { timeout: 2000 })).data.toString()).toBe('pong');
  });
  it('a stall of the process that holds both ends (600 ms, twice the timeout) drops neither', async () => {
    const listener = await listen('127.0.0.1:0', { heartbeatTimeout: 300 });
    cleanups.push(() => listener.close());
    const [client, server] = await Promise.all([
      dial(listener.address(), { heartbeatInterval: 100, heartbeatTimeout: 300 }),
      listener.acceptEnd(),
    ]);
    cleanups.push(
      () => client.destroy(),
      () => server.destroy(),
    );
    await server.register('ping', () => 'pong');
    // Neither end could send or read while stalled: the time does not count against the other.
    stall(600);
    await delay(500);
    expect(client.closeError).toBeUndefined();
    expect(server.closeError).toBeUndefined();
    expect((await client.call('ping', '', { timeout: 2000 })).data.toString()).toBe('pong');
  });
});
