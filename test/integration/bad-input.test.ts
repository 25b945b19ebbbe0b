/**
 * Hostile and broken peers, written byte by byte over raw sockets: a real server must drop each bad connection
 * with a typed error, never crash the process, and keep serving a well-behaved client connected all along.
 * The client side is checked the same way against a fake server built on node:net.
 */
import net from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { encodePacket, HEADER_LENGTH, PacketType as T } from '../../sdk/frame/index.js';
import {
  ConnectionClosedError,
  dial,
  type End,
  FrameTooLargeError,
  GeminioError,
  type Listener,
  listen,
  ProtocolError,
} from '../../sdk/index.js';
import { RawPeer } from '../helpers/raw-peer.js';

// ---- frames written by hand ----

function header(type: number, length: number, id = 7n): Buffer {
  const h = Buffer.alloc(HEADER_LENGTH);
  h[0] = 0x01;
  h[1] = type;
  h.writeBigUInt64BE(id, 2);
  h.writeUInt32BE(length, 10);
  return h;
}

/** Conn with flags byte 0x18 (clientIDAcquire, heartbeat code 1), as a Go client sends it. */
function connFrame(id = 0x1001n, json = '{}'): Buffer {
  const body = Buffer.concat([Buffer.from([0x18, 0x00]), Buffer.alloc(8), Buffer.from(json)]);
  return Buffer.concat([header(T.Conn, body.length, id), body]);
}

const methodName = 'echo';

function requestFrame(id: bigint, method: string, value: string, sessionId = 1n): Buffer {
  return encodePacket({
    type: T.Request,
    id,
    sessionId,
    data: { key: Buffer.from(method), value: Buffer.from(value) },
  });
}

// ---- process-level guard ----

const uncaught: unknown[] = [];
const onUncaught = (err: unknown) => uncaught.push(err);
const onUnhandled = (err: unknown) => uncaught.push(err);

beforeAll(() => {
  process.on('uncaughtException', onUncaught);
  process.on('unhandledRejection', onUnhandled);
});

afterAll(() => {
  process.off('uncaughtException', onUncaught);
  process.off('unhandledRejection', onUnhandled);
  expect(uncaught).toEqual([]);
});

const toClean: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of toClean.splice(0).reverse()) await c();
});

// ---- a real server, a good client, and bad raw clients ----

describe('a real server against bad input', () => {
  let listener: Listener;
  let goodClient: End;
  let goodServer: End;
  const handshakeErrors: unknown[] = [];
  let handshakeWaiters: Array<(e: unknown) => void> = [];

  beforeAll(async () => {
    listener = await listen('127.0.0.1:0');
    listener.on('handshakeError', (err: unknown) => {
      handshakeErrors.push(err);
      const waiters = handshakeWaiters;
      handshakeWaiters = [];
      for (const w of waiters) w(err);
    });
    [goodClient, goodServer] = await Promise.all([dial(listener.address()), listener.acceptEnd()]);
    await goodServer.register(methodName, ({ data }) => Buffer.concat([Buffer.from('echo:'), data]));
  });

  afterAll(async () => {
    goodClient?.destroy();
    goodServer?.destroy();
    await listener?.close();
  });

  function nextHandshakeError(timeout = 3000): Promise<unknown> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no handshakeError event')), timeout);
      handshakeWaiters.push((e) => {
        clearTimeout(timer);
        resolve(e);
      });
    });
  }

  async function rawClient(): Promise<RawPeer> {
    const peer = await RawPeer.connect(listener.address().port);
    toClean.push(() => peer.destroy());
    return peer;
  }

  async function goodClientStillWorks(): Promise<void> {
    const r = await goodClient.call(methodName, 'ping', { timeout: 3000 });
    expect(r.data.toString()).toBe('echo:ping');
    expect(goodClient.closeError).toBeUndefined();
    expect(goodServer.closeError).toBeUndefined();
  }

  /** Only a DisConn may come back from a server dropping a connection that never completed the handshake. */
  function expectOnlyDisConn(peer: RawPeer): void {
    expect(peer.decodeError).toBeUndefined();
    for (const p of peer.packets) expect(p.type).toBe(T.DisConn);
  }

  const preHandshake: Array<[string, () => Buffer, 'end' | 'keep', Array<new (...a: never[]) => Error>]> = [
    [
      'a truncated Conn frame, then the socket ends',
      () => connFrame().subarray(0, 17),
      'end',
      [ConnectionClosedError, ProtocolError],
    ],
    [
      'a header declaring 4 GiB - 1 body bytes',
      () => header(T.Conn, 0xffff_ffff),
      'keep',
      [FrameTooLargeError],
    ],
    [
      'a Stream header declaring 4 GiB - 1 body bytes',
      () => header(T.Stream, 0xffff_ffff),
      'keep',
      [FrameTooLargeError],
    ],
    ['a Conn with a length below its fixed part', () => header(T.Conn, 9), 'keep', [ProtocolError]],
    [
      'a Conn with a length below its fixed part, body sent',
      () => Buffer.concat([header(T.Conn, 5), Buffer.alloc(5)]),
      'keep',
      [ProtocolError],
    ],
    [
      'an unknown packet type 0x99',
      () => Buffer.concat([header(0x99, 4), Buffer.alloc(4)]),
      'keep',
      [ProtocolError],
    ],
    ['an unknown packet type 0x00', () => header(0x00, 0), 'keep', [ProtocolError]],
    ['invalid JSON in Conn', () => connFrame(1n, '{"meta":'), 'keep', [ProtocolError]],
    ['JSON array in Conn', () => connFrame(1n, '[]'), 'keep', [ProtocolError]],
    ['unpadded base64 in Conn meta', () => connFrame(1n, '{"meta":"YQ"}'), 'keep', [ProtocolError]],
    ['URL-safe base64 in Conn meta', () => connFrame(1n, '{"meta":"-_8="}'), 'keep', [ProtocolError]],
    ['a data packet (Request) before Conn', () => requestFrame(5n, methodName, 'x'), 'keep', [ProtocolError]],
    [
      'a Stream packet before Conn',
      () => encodePacket({ type: T.Stream, id: 5n, sessionId: 1n, payload: Buffer.from('x') }),
      'keep',
      [ProtocolError],
    ],
    [
      'a Session packet before Conn',
      () => encodePacket({ type: T.Session, id: 5n, priority: 0, flags: 0x10, negotiateId: 3n, data: {} }),
      'keep',
      [ProtocolError],
    ],
    ['a Heartbeat before Conn', () => encodePacket({ type: T.Heartbeat, id: 5n }), 'keep', [ProtocolError]],
  ];

  it.each(preHandshake)(
    '%s: socket closed, handshakeError with a typed error',
    async (_name, bytes, mode, classes) => {
      const errPromise = nextHandshakeError();
      const peer = await rawClient();
      peer.send(bytes());
      if (mode === 'end') peer.socket.end();
      const err = await errPromise;
      expect(err).toBeInstanceOf(GeminioError);
      expect(
        classes.some((c) => err instanceof c),
        `got ${String(err)}`,
      ).toBe(true);
      await peer.waitClosedByPeer();
      expectOnlyDisConn(peer);
      await goodClientStillWorks();
    },
  );

  /** A raw client that completed the handshake, and the server End the listener accepted for it. */
  async function handshaken(): Promise<{ peer: RawPeer; end: End }> {
    const peer = await rawClient();
    peer.onPacket = (p) => {
      // Answer Registers as a Go client would, so nothing on the server side waits.
      if (p.type === T.Register) {
        peer.send(encodePacket({ type: T.RegisterAck, id: p.id, sessionId: p.sessionId, data: {} }));
      }
    };
    peer.send(connFrame(0x2002n));
    const ack = await peer.next((p) => p.type === T.ConnAck);
    expect(ack).toMatchObject({ type: T.ConnAck, id: 0x2002n, retCode: 0 });
    const end = await listener.acceptEnd();
    toClean.push(() => end.destroy());
    expect(end.clientId).toBe((ack as { clientId: bigint }).clientId);
    return { peer, end };
  }

  function endClosed(end: End): Promise<void> {
    if (end.closed) return Promise.resolve();
    return new Promise((resolve) => end.once('close', () => resolve()));
  }

  const postHandshake: Array<[string, () => Buffer, Array<new (...a: never[]) => Error>]> = [
    ['a second Conn', () => connFrame(0x3003n), [ProtocolError]],
    ['a header declaring 4 GiB - 1 body bytes', () => header(T.Message, 0xffff_ffff), [FrameTooLargeError]],
    ['a Message with a length below its fixed part', () => header(T.Message, 7), [ProtocolError]],
    ['an unknown packet type 0x13', () => header(0x13, 0), [ProtocolError]],
    [
      'invalid JSON in a Request',
      () => Buffer.concat([header(T.Request, 9), Buffer.from([0, 0, 0, 0, 0, 0, 0, 1]), Buffer.from('{')]),
      [ProtocolError],
    ],
    [
      'invalid base64 in a Message value',
      () => {
        const json = Buffer.from('{"value":"aGk"}');
        const body = Buffer.concat([Buffer.from([0, 0, 0, 0, 0, 0, 0, 1]), json]);
        return Buffer.concat([header(T.Message, body.length), body]);
      },
      [ProtocolError],
    ],
    [
      'a non-empty Heartbeat',
      () => Buffer.concat([header(T.Heartbeat, 2), Buffer.from('{}')]),
      [ProtocolError],
    ],
    [
      'a ConnAck sent by a client',
      () => encodePacket({ type: T.ConnAck, id: 1n, retCode: 0, clientId: 5n, data: {} }),
      [ProtocolError],
    ],
  ];

  it.each(postHandshake)(
    'after the handshake, %s: the server End closes with a typed closeError',
    async (_n, bytes, classes) => {
      const { peer, end } = await handshaken();
      const closed = endClosed(end);
      peer.send(bytes());
      await closed;
      expect(end.closeError).toBeInstanceOf(GeminioError);
      expect(
        classes.some((c) => end.closeError instanceof c),
        `got ${String(end.closeError)}`,
      ).toBe(true);
      await peer.waitClosedByPeer();
      expect(peer.decodeError).toBeUndefined();
      // After the handshake the server may say DisConn (a Go peer would wait for it); nothing else.
      for (const p of peer.packets.slice(1)) expect([T.DisConn, T.RegisterAck, T.Register]).toContain(p.type);
      await goodClientStillWorks();
    },
  );

  it('Stream data for an unknown stream ID is ignored: the connection stays up', async () => {
    const { peer, end } = await handshaken();
    await end.register(methodName, ({ data }) => data);
    peer.send(
      encodePacket({
        type: T.Stream,
        id: 11n,
        sessionId: 0xdead_beef_0000_0001n,
        payload: Buffer.from('lost'),
      }),
      encodePacket({ type: T.Stream, id: 12n, sessionId: 0n, payload: Buffer.from('lost too') }),
      encodePacket({ type: T.Heartbeat, id: 0x4004n }),
    );
    const hbAck = await peer.next((p) => p.type === T.HeartbeatAck);
    expect(hbAck.id).toBe(0x4004n);
    // An RPC round trip on stream 1 still works.
    peer.send(requestFrame(0x5005n, methodName, 'still here'));
    const rsp = await peer.next((p) => p.type === T.Response);
    expect(rsp).toMatchObject({ id: 0x5005n, sessionId: 1n });
    expect((rsp as { data: { value?: Buffer } }).data.value?.toString()).toBe('still here');
    expect(end.closeError).toBeUndefined();
    expect(end.destroyed).toBe(false);
    expect(peer.ended).toBe(false);
    await goodClientStillWorks();
  });

  it('the good client kept working through every bad case', async () => {
    await goodClientStillWorks();
    expect(handshakeErrors.length).toBeGreaterThanOrEqual(preHandshake.length);
    for (const e of handshakeErrors) expect(e).toBeInstanceOf(GeminioError);
  });
});

// ---- the client side, against a fake server ----

describe('a real client against a fake server', () => {
  async function fakeServer(): Promise<{ port: number; peer: Promise<RawPeer> }> {
    const server = net.createServer();
    let resolvePeer: (p: RawPeer) => void = () => {};
    const peer = new Promise<RawPeer>((r) => (resolvePeer = r));
    server.on('connection', (socket) => {
      const raw = new RawPeer(socket);
      toClean.push(() => raw.destroy());
      raw.onPacket = (p) => {
        if (p.type === T.Conn) {
          raw.send(encodePacket({ type: T.ConnAck, id: p.id, retCode: 0, clientId: 0x77n, data: {} }));
        } else if (p.type === T.Register) {
          raw.send(encodePacket({ type: T.RegisterAck, id: p.id, sessionId: p.sessionId, data: {} }));
        } else if (p.type === T.Heartbeat) {
          raw.send(encodePacket({ type: T.HeartbeatAck, id: p.id }));
        }
      };
      resolvePeer(raw);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    toClean.push(() => new Promise<void>((resolve) => server.close(() => resolve())));
    return { port: (server.address() as net.AddressInfo).port, peer };
  }

  async function connected(): Promise<{ peer: RawPeer; end: End }> {
    const { port, peer } = await fakeServer();
    const end = await dial({ host: '127.0.0.1', port });
    toClean.push(() => end.destroy());
    expect(end.clientId).toBe(0x77n);
    return { peer: await peer, end };
  }

  it('a second Session reusing a live stream ID gets an error SessionAck; the first stream keeps working', async () => {
    const { peer, end } = await connected();
    const streamId = 0x6600_0000_0000_0002n;
    const session = (id: bigint) =>
      encodePacket({
        type: T.Session,
        id,
        priority: 0,
        flags: 0,
        negotiateId: streamId,
        data: { meta: Buffer.from('m') },
      });

    peer.send(session(0x101n));
    const first = await peer.next((p) => p.type === T.SessionAck);
    expect(first).toMatchObject({ id: 0x101n, negotiateId: streamId, sessionId: streamId });
    expect((first as { data: { error?: string } }).data.error).toBeUndefined();
    const stream = await end.acceptStream();
    expect(stream.streamId).toBe(streamId);
    expect(stream.meta.toString()).toBe('m');

    peer.send(session(0x102n));
    const second = await peer.next((p) => p.type === T.SessionAck);
    expect(second).toMatchObject({ id: 0x102n, negotiateId: streamId });
    expect((second as { data: { error?: string } }).data.error).toEqual(expect.any(String));

    // The first stream still carries data both ways, and was not dismissed.
    const got = new Promise<Buffer>((resolve) => stream.once('data', resolve));
    peer.send(
      encodePacket({ type: T.Stream, id: 0x103n, sessionId: streamId, payload: Buffer.from('hello') }),
    );
    expect((await got).toString()).toBe('hello');
    stream.write('back');
    const back = await peer.next((p) => p.type === T.Stream);
    expect(back).toMatchObject({ sessionId: streamId });
    expect((back as { payload: Buffer }).payload.toString()).toBe('back');
    expect(peer.packets.some((p) => p.type === T.Dismiss)).toBe(false);
    expect(stream.destroyed).toBe(false);
    expect(end.closeError).toBeUndefined();
  });

  it('Stream data for an unknown stream ID is ignored: an RPC round trip still works', async () => {
    const { peer, end } = await connected();
    await end.register(methodName, ({ data }) => Buffer.concat([Buffer.from('client:'), data]));
    peer.send(
      encodePacket({ type: T.Stream, id: 0x201n, sessionId: 0x1234_5678n, payload: Buffer.from('nobody') }),
      encodePacket({ type: T.Dismiss, id: 0x202n, sessionId: 0x1234_5679n, data: {} }),
      requestFrame(0x203n, methodName, 'hi'),
    );
    const rsp = await peer.next((p) => p.type === T.Response);
    expect(rsp).toMatchObject({ id: 0x203n, sessionId: 1n });
    expect((rsp as { data: { value?: Buffer } }).data.value?.toString()).toBe('client:hi');
    expect(end.closeError).toBeUndefined();
    expect(end.destroyed).toBe(false);
  });

  it('a malformed frame from the server closes the client End with ProtocolError', async () => {
    const { peer, end } = await connected();
    const closed = new Promise<void>((resolve) => end.once('close', () => resolve()));
    peer.send(header(0x99, 0));
    await closed;
    expect(end.closeError).toBeInstanceOf(ProtocolError);
    await peer.waitClosedByPeer();
  });
});
