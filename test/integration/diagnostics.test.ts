/**
 * The diagnostics channels, over real TCP connections: each channel fires with the right fields, and the byte
 * events and the close totals add up to what was sent.
 */
import diagnostics from 'node:diagnostics_channel';
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import {
  CHANNELS,
  type ConnectionCloseMessage,
  type ConnectionOpenMessage,
  dial,
  type End,
  type EndReconnectingMessage,
  type EndReconnectMessage,
  type HandshakeErrorMessage,
  listen,
  type Stream,
  type StreamBytesMessage,
  type StreamCloseMessage,
  type StreamOpenMessage,
} from '../../sdk/index.js';
import { once, randomBytes, readAll, tcpPair } from '../helpers/pair.js';
import { hasOpenssl, selfSigned } from '../helpers/tls.js';
import { waitUntil } from '../helpers/wait.js';

type Name = keyof typeof CHANNELS;
const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** Records every message of every channel until the test ends. */
function record(): Record<Name, unknown[]> {
  const seen = {} as Record<Name, unknown[]>;
  for (const name of Object.keys(CHANNELS) as Name[]) {
    const list: unknown[] = [];
    seen[name] = list;
    const fn = (m: unknown) => list.push(m);
    diagnostics.subscribe(CHANNELS[name], fn);
    cleanups.push(() => diagnostics.unsubscribe(CHANNELS[name], fn));
  }
  return seen;
}

describe('diagnostics channels', () => {
  it('stream open, bytes and close: totals match what each side sent', async () => {
    const seen = record();
    const { client, server, cleanup } = await tcpPair();
    cleanups.push(cleanup);
    const up = randomBytes(300_000);
    const down = randomBytes(70_000);
    const accepted = server.acceptStream();
    const s = await client.openStream({ meta: 'm' });
    const r = await accepted;
    const serverRead = readAll(r);
    r.end(down);
    s.end(up);
    expect((await serverRead).length).toBe(up.length);
    expect((await readAll(s)).length).toBe(down.length);
    await waitUntil(() => seen.streamClose.length === 2, 5000, 'both streams finalized');

    const opens = seen.streamOpen as StreamOpenMessage[];
    const local = opens.find((m) => m.stream === s)!;
    const remote = opens.find((m) => m.stream === r)!;
    expect(local).toMatchObject({
      end: client,
      origin: 'local',
      streamId: s.streamId,
      clientId: client.clientId,
    });
    expect(remote).toMatchObject({
      end: server,
      origin: 'remote',
      streamId: r.streamId,
      clientId: server.clientId,
    });

    const sum = (list: unknown[], stream: Stream) =>
      (list as StreamBytesMessage[]).filter((m) => m.stream === stream).reduce((n, m) => n + m.bytes, 0);
    expect(sum(seen.streamBytesOut, s)).toBe(up.length);
    expect(sum(seen.streamBytesIn, r)).toBe(up.length);
    expect(sum(seen.streamBytesOut, r)).toBe(down.length);
    expect(sum(seen.streamBytesIn, s)).toBe(down.length);

    const closes = seen.streamClose as StreamCloseMessage[];
    expect(closes.find((m) => m.stream === s)).toMatchObject({
      end: client,
      streamId: s.streamId,
      bytesOut: up.length,
      bytesIn: down.length,
      error: undefined,
    });
    expect(closes.find((m) => m.stream === r)).toMatchObject({
      end: server,
      bytesOut: down.length,
      bytesIn: up.length,
      error: undefined,
    });
    // The default stream (the End itself) is not reported as a stream.
    expect(opens.some((m) => (m.stream as unknown) === client || (m.stream as unknown) === server)).toBe(
      false,
    );
  });

  it('a stream lost with its connection closes with the error', async () => {
    const seen = record();
    const { client, server, cleanup } = await tcpPair();
    cleanups.push(cleanup);
    const accepted = server.acceptStream();
    const s = await client.openStream();
    s.on('error', () => {});
    await accepted;
    server.destroy();
    await waitUntil(
      () => (seen.streamClose as StreamCloseMessage[]).some((m) => m.stream === s),
      5000,
      'close',
    );
    const close = (seen.streamClose as StreamCloseMessage[]).find((m) => m.stream === s)!;
    expect(close.error).toBeInstanceOf(Error);
  });

  it('connection open and close on both sides', async () => {
    const seen = record();
    const { client, server, cleanup } = await tcpPair();
    cleanups.push(cleanup);
    const opens = seen.connectionOpen as ConnectionOpenMessage[];
    expect(opens.find((m) => m.end === client)).toMatchObject({
      role: 'client',
      clientId: client.clientId,
      resumed: false,
    });
    const serverOpen = opens.find((m) => m.end === server)!;
    expect(serverOpen).toMatchObject({ role: 'server', clientId: client.clientId, resumed: false });
    expect(serverOpen.remoteAddress).toBe('127.0.0.1');
    await client.close();
    await waitUntil(() => seen.connectionClose.length === 2, 5000, 'both connections closed');
    const closes = seen.connectionClose as ConnectionCloseMessage[];
    expect(closes.find((m) => m.end === client)).toMatchObject({ role: 'client', error: undefined });
    expect(closes.find((m) => m.end === server)).toMatchObject({ role: 'server', error: undefined });
  });

  it('a reconnecting End reports the outage and the reconnect', async () => {
    const seen = record();
    const listener = await listen('127.0.0.1:0');
    cleanups.push(() => listener.close());
    const client = await dial(listener.address(), { reconnect: { minDelay: 10, maxDelay: 50 } });
    cleanups.push(() => client.destroy());
    const first = await listener.acceptEnd();
    const reconnected = once(client, 'reconnect');
    first.destroy();
    const second = await listener.acceptEnd();
    cleanups.push(() => second.destroy());
    await reconnected;
    const reconnecting = seen.endReconnecting as EndReconnectingMessage[];
    expect(reconnecting[0]).toMatchObject({ end: client, clientId: client.clientId, attempt: 1 });
    expect(reconnecting[0]!.delayMs).toBeGreaterThanOrEqual(0);
    expect(reconnecting[0]!.delayMs).toBeLessThanOrEqual(50);
    expect(seen.endReconnect as EndReconnectMessage[]).toEqual([
      { end: client, clientId: client.clientId, attempts: reconnecting.length },
    ]);
    const resumed = (seen.connectionOpen as ConnectionOpenMessage[]).filter((m) => m.end === client);
    expect(resumed.map((m) => m.resumed)).toEqual([false, true]);
    expect((seen.connectionClose as ConnectionCloseMessage[]).some((m) => m.end === client)).toBe(true);
  });

  it('handshake failures: rejected (both sides) and protocol', async () => {
    const seen = record();
    const listener = await listen('127.0.0.1:0', {
      onConnect: () => {
        throw new Error('go away');
      },
    });
    cleanups.push(() => listener.close());
    await expect(dial(listener.address())).rejects.toThrow('go away');
    await waitUntil(() => seen.handshakeError.length >= 2, 5000, 'both sides reported');
    const errors = seen.handshakeError as HandshakeErrorMessage[];
    expect(errors.find((m) => m.role === 'client')).toMatchObject({ reason: 'rejected' });
    expect(errors.find((m) => m.role === 'server')).toMatchObject({ reason: 'rejected' });

    // Garbage instead of a Conn frame.
    const socket = net.connect(listener.address());
    cleanups.push(() => socket.destroy());
    await once(socket, 'connect');
    socket.write(Buffer.alloc(64, 0xff));
    await waitUntil(() => errors.some((m) => m.reason === 'protocol'), 5000, 'protocol error reported');
    const bad = errors.find((m) => m.reason === 'protocol')!;
    expect(bad.role).toBe('server');
    expect(bad.error).toBeInstanceOf(Error);
  });

  // Node cannot make certificates itself: without openssl there is no TLS listener to fail against.
  it.skipIf(!hasOpenssl)('a TLS handshake failure is reported with reason tls, on both sides', async () => {
    const seen = record();
    const listener = await listen('127.0.0.1:0', { tls: selfSigned() });
    cleanups.push(() => listener.close());
    listener.on('handshakeError', () => {});
    // The client does not trust the self-signed certificate.
    await expect(dial(listener.address(), { tls: { servername: 'localhost' } })).rejects.toThrow();
    const errors = seen.handshakeError as HandshakeErrorMessage[];
    await waitUntil(() => errors.some((m) => m.role === 'server'), 5000, 'server side reported');
    expect(errors.find((m) => m.role === 'client')).toMatchObject({ reason: 'tls' });
    expect(errors.find((m) => m.role === 'server')).toMatchObject({ reason: 'tls' });
  });

  it('publishes nothing for an End nobody observes: no subscriber, no work', async () => {
    // Subscribing after the streams exist: messages name live objects only, nothing is buffered.
    const { client, server, cleanup } = await tcpPair();
    cleanups.push(cleanup);
    const accepted = server.acceptStream();
    const s = await client.openStream();
    await accepted;
    const seen = record();
    s.write('x');
    await waitUntil(() => seen.streamBytesOut.length === 1, 5000, 'bytes after subscribing');
    expect(seen.streamOpen).toEqual([]);
    expect((seen.streamBytesOut[0] as StreamBytesMessage).bytes).toBe(1);
    void (client satisfies End);
  });
});
