/**
 * No unbounded waits before authentication: a connection that fails or times out its TLS or geminio handshake is
 * closed by the server; before the handshake a peer may send only small frames, and all handshaking connections
 * of a listener share one byte budget; a slow message receiver is bounded by bytes as well as by count.
 */
import type net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { PacketType as T } from '../../sdk/frame/constants.js';
import { FrameTooLargeError, LimitExceededError, type Listener, listen } from '../../sdk/index.js';
import { tcpPair } from '../helpers/pair.js';
import { rawSocket as rawClient } from '../helpers/raw-peer.js';
import { hasOpenssl, selfSigned } from '../helpers/tls.js';

/** Resolves when the server closes the socket (end or reset). */
function closedByServer(s: net.Socket): Promise<void> {
  return new Promise((resolve) => {
    if (s.destroyed) return resolve();
    s.on('error', () => {});
    s.resume();
    s.once('close', () => resolve());
  });
}

/** A frame header declaring a Conn body of `length` bytes (version 1 wire format: ver, type, id, length). */
function connHeader(length: number): Buffer {
  const h = Buffer.alloc(14);
  h[0] = 1;
  h[1] = T.Conn;
  h.writeBigUInt64BE(1n, 2);
  h.writeUInt32BE(length, 10);
  return h;
}

let listener: Listener | undefined;
afterEach(async () => {
  await listener?.close();
  listener = undefined;
});

describe('before the handshake', () => {
  it.skipIf(!hasOpenssl)('a TLS handshake that times out closes the socket (20 silent clients)', async () => {
    listener = await listen('127.0.0.1:0', { tls: selfSigned(), handshakeTimeout: 200 });
    const errors: Error[] = [];
    listener.on('handshakeError', (err: Error) => errors.push(err));
    const { port } = listener.address();
    const sockets = await Promise.all(Array.from({ length: 20 }, () => rawClient(port)));
    // They never send a ClientHello: the server must hang up on every one.
    await Promise.all(sockets.map(closedByServer));
    expect(sockets.every((s) => s.destroyed)).toBe(true);
    expect(errors.length).toBe(20);
  });

  it('a geminio handshake that times out closes the socket', async () => {
    listener = await listen('127.0.0.1:0', { handshakeTimeout: 200 });
    const errors: Error[] = [];
    listener.on('handshakeError', (err: Error) => errors.push(err));
    const s = await rawClient(listener.address().port);
    await closedByServer(s);
    expect(errors.map((e) => e.name)).toEqual(['HandshakeTimeoutError']);
  });

  it('a Conn larger than maxHandshakePacketLength is refused from its header', async () => {
    listener = await listen('127.0.0.1:0', { maxHandshakePacketLength: 1024 });
    const errors: Error[] = [];
    listener.on('handshakeError', (err: Error) => errors.push(err));
    const s = await rawClient(listener.address().port);
    s.write(connHeader(1025));
    await closedByServer(s);
    expect(errors[0]).toBeInstanceOf(FrameTooLargeError);
  });

  it('handshaking connections share handshakeBufferBudget: the one that goes past it is closed', async () => {
    listener = await listen('127.0.0.1:0', {
      maxHandshakePacketLength: 64 * 1024,
      handshakeBufferBudget: 100 * 1024,
    });
    const errors: Error[] = [];
    listener.on('handshakeError', (err: Error) => errors.push(err));
    const { port } = listener.address();
    // Each sends 40 KiB of a 60 KiB Conn and waits: two fit in 100 KiB, the third does not.
    const send = async () => {
      const s = await rawClient(port);
      s.on('error', () => {});
      await new Promise<void>((r) =>
        s.write(Buffer.concat([connHeader(60 * 1024), Buffer.alloc(40 * 1024)]), () => r()),
      );
      return s;
    };
    const sockets = [await send(), await send(), await send()];
    // Whichever arrived last goes past the budget; after it is gone the other two fit.
    await Promise.race(sockets.map(closedByServer));
    expect(errors.length).toBe(1);
    expect(errors[0]).toBeInstanceOf(LimitExceededError);
    expect(sockets.filter((s) => s.destroyed).length).toBe(1);
    for (const s of sockets) s.destroy();
  });
});

describe('a slow message receiver', () => {
  it('is bounded by receiveQueueBytes: the socket pauses, and every message still arrives', async () => {
    const MiB = 1024 * 1024;
    const pair = await tcpPair({ flowControl: false }, { receiveQueueBytes: 2 * MiB });
    try {
      const n = 10;
      for (let i = 0; i < n; i++) {
        await pair.client.publish(Buffer.alloc(MiB, i), { delivery: 'at-most-once' });
      }
      const messenger = pair.server.channel.messaging as unknown as { queue: unknown[]; paused: boolean };
      // The receiver reads nothing: the queue stops growing at the byte bound, not at 1024 messages.
      for (let i = 0; i < 200 && !messenger.paused; i++) await new Promise((r) => setTimeout(r, 10));
      expect(messenger.paused).toBe(true);
      expect(messenger.queue.length).toBeLessThanOrEqual(3);
      const got: number[] = [];
      for (let i = 0; i < n; i++) {
        const m = await pair.server.receive();
        expect(m.data.length).toBe(MiB);
        got.push(m.data[0]!);
        m.done();
      }
      expect(got).toEqual(Array.from({ length: n }, (_, i) => i));
    } finally {
      await pair.cleanup();
    }
  });
});
