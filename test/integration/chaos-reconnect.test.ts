/**
 * Issue 3: reconnects and bad input over real sockets. A reconnecting Node client talks to a Node server through
 * the fault-injecting ChaosProxy (chaos/), which kills, resets and blackholes its connections; the invariants are
 * those of at-least-once messaging (nothing acknowledged is lost, nothing is delivered twice), liveness detection
 * within the heartbeat timeout, and nothing left behind after close(). The last block feeds a real client packets
 * a correct peer never sends, from a fake server built on node:net and the frame codec.
 */
import diagnostics from 'node:diagnostics_channel';
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { ChaosProxy } from '../../chaos/index.js';
import { encodePacket, FrameDecoder, type Packet, PacketType as T } from '../../sdk/frame/index.js';
import {
  CHANNELS,
  dial,
  type End,
  type EndReconnectingMessage,
  GeminioError,
  HeartbeatTimeoutError,
  type Listener,
  listen,
  TimeoutError,
} from '../../sdk/index.js';
import { RawPeer } from '../helpers/raw-peer.js';
import { delay, nextEvent, waitUntil } from '../helpers/wait.js';

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const TRACKED = new Set(['Timeout', 'TCPSocketWrap', 'TCPServerWrap']);

/** Counts of the timers, sockets and servers this process holds, by type. */
function resources(): Record<string, number> {
  const out: Record<string, number> = {};
  for (const r of process.getActiveResourcesInfo()) if (TRACKED.has(r)) out[r] = (out[r] ?? 0) + 1;
  return out;
}

/** Waits (up to `timeout`) until no tracked resource type exceeds its baseline count; returns the last counts. */
async function settledTo(baseline: Record<string, number>, timeout = 2000): Promise<Record<string, number>> {
  const started = Date.now();
  for (;;) {
    const now = resources();
    const over = Object.entries(now).some(([k, n]) => n > (baseline[k] ?? 0));
    if (!over || Date.now() - started > timeout) return now;
    await delay(20);
  }
}

/** Every (type, count) of `now` is at most the baseline's. */
function expectNoMoreThan(now: Record<string, number>, baseline: Record<string, number>): void {
  for (const key of TRACKED)
    expect(now[key] ?? 0, `${key} left behind`).toBeLessThanOrEqual(baseline[key] ?? 0);
}

/** A listener that serves every End it accepts with `serve`, closed (with its Ends) after the test. */
async function server(
  port = 0,
  serve: (end: End) => void = () => {},
): Promise<{ listener: Listener; ends: End[] }> {
  const listener = await listen({ host: '127.0.0.1', port });
  const ends: End[] = [];
  (async () => {
    for await (const end of listener) {
      ends.push(end);
      serve(end);
    }
  })().catch(() => {});
  cleanups.push(async () => {
    await listener.close();
    for (const e of ends) e.destroy();
  });
  return { listener, ends };
}

async function proxyTo(listener: Listener): Promise<ChaosProxy> {
  const proxy = new ChaosProxy({ target: listener.address(), killGraceMs: 200 });
  await proxy.start();
  cleanups.push(() => proxy.close());
  return proxy;
}

describe('reconnecting through the chaos proxy', () => {
  it('50 forced disconnects under at-least-once publish load: 0 acked messages lost, 0 duplicates', async () => {
    const delivered = new Map<number, number>();
    // Replays the server's delivery window answered without delivering (same ClientID, so one shared window):
    // proof that the duplicate path was exercised, not only the happy one.
    let replaysAbsorbed = 0;
    const counted = new WeakSet<object>();
    const { listener, ends } = await server(0, (end) => {
      const window = end.channel.messaging.window;
      if (window && !counted.has(window)) {
        counted.add(window);
        const admit = window.admit.bind(window);
        window.admit = (id, ack) => {
          const fresh = admit(id, ack);
          if (!fresh) replaysAbsorbed++;
          return fresh;
        };
      }
      (async () => {
        for (;;) {
          const m = await end.receive();
          const seq = Number(m.data.toString());
          delivered.set(seq, (delivered.get(seq) ?? 0) + 1);
          m.done();
        }
      })().catch(() => {}); // the End closed: its connection was killed
    });
    const proxy = await proxyTo(listener);
    const client = await dial(proxy.address(), {
      reconnect: { minDelay: 5, maxDelay: 50 },
      publishTimeout: 10_000,
    });
    cleanups.push(() => client.destroy());
    const clientId = client.clientId;
    let reconnects = 0;
    client.on('reconnect', () => reconnects++);

    const acked = new Set<number>();
    const rejected: unknown[] = [];
    let seq = 0;
    let stop = false;
    const inFlight = new Set<Promise<void>>();
    const publisher = async () => {
      while (!stop) {
        const n = ++seq;
        const p = client.publish(String(n)).then(
          () => void acked.add(n),
          (err: unknown) => void rejected.push(err),
        );
        inFlight.add(p);
        await p;
        inFlight.delete(p);
      }
    };
    const publishers = Array.from({ length: 16 }, publisher);

    for (let i = 0; i < 50; i++) {
      await waitUntil(() => client.state === 'connected', 5000, `connected before disconnect #${i + 1}`);
      const before = acked.size;
      // Let some publishes complete on this connection (and some stay in flight) before breaking it.
      await waitUntil(() => acked.size >= before + 5, 5000, `progress before disconnect #${i + 1}`);
      await delay(Math.floor(Math.random() * 15));
      const broken = i % 2 === 0 ? proxy.killAll() : proxy.resetAll();
      expect(broken).toBeGreaterThanOrEqual(1);
      await waitUntil(() => reconnects > i, 5000, `reconnect #${i + 1}`);
    }
    stop = true;
    await Promise.all(publishers);
    await Promise.all([...inFlight]);

    expect(reconnects).toBe(50);
    expect(client.state).toBe('connected');
    expect(client.clientId).toBe(clientId);
    expect(ends.length).toBe(51);
    for (const e of ends) expect(e.clientId).toBe(clientId);
    expect(acked.size).toBeGreaterThan(50 * 5);

    const lost = [...acked].filter((n) => !delivered.has(n));
    expect(lost, 'acknowledged but never delivered').toEqual([]);
    expect(
      replaysAbsorbed,
      'no message was ever replayed: the test did not exercise resends',
    ).toBeGreaterThan(0);
    const duplicates = [...delivered].filter(([, count]) => count > 1).map(([n]) => n);
    expect(duplicates, 'delivered more than once').toEqual([]);
    // A rejection is acceptable only as a retryable error (none is expected with a 10 s publishTimeout).
    for (const err of rejected) {
      expect(err).toBeInstanceOf(GeminioError);
      expect((err as GeminioError).retryable).toBe(true);
    }
    expect(acked.size + rejected.length).toBe(seq);
  });

  it('a blackholed server is detected within the liveness timeout', async () => {
    const { listener } = await server();
    const proxy = await proxyTo(listener);
    const client = await dial(proxy.address(), {
      heartbeatInterval: 100,
      heartbeatTimeout: 400,
      handshakeTimeout: 500,
      reconnect: { minDelay: 20, maxDelay: 100 },
    });
    cleanups.push(() => client.destroy());
    // The error type says the liveness timeout ended it; the wait bounds it, and the moment itself is the fake-clock
    // unit test's (test/unit/sdk/liveness.test.ts): timers run late on a loaded machine.
    const disconnected = nextEvent(client, 'disconnect', 10_000);
    const t0 = Date.now();
    proxy.setFaults({ blackhole: true });
    const [err] = await disconnected;
    const elapsed = Date.now() - t0;
    expect(err).toBeInstanceOf(HeartbeatTimeoutError);
    expect((err as HeartbeatTimeoutError).retryable).toBe(true);
    expect(elapsed).toBeGreaterThanOrEqual(300);
    // Once the network heals, the client is back on its own.
    const back = nextEvent(client, 'reconnect', 5000);
    proxy.clearFaults();
    await back;
    expect(client.state).toBe('connected');
  });

  it('is back within maxDelay of a server restart', async () => {
    const first = await server();
    const { port } = first.listener.address();
    const proxy = await proxyTo(first.listener);
    const maxDelay = 200;
    const delays: number[] = [];
    const onReconnecting = (m: unknown) => delays.push((m as EndReconnectingMessage).delayMs);
    diagnostics.subscribe(CHANNELS.endReconnecting, onReconnecting);
    cleanups.push(() => diagnostics.unsubscribe(CHANNELS.endReconnecting, onReconnecting));
    const client = await dial(proxy.address(), { reconnect: { minDelay: 10, maxDelay, jitter: 0 } });
    cleanups.push(() => client.destroy());
    await waitUntil(() => first.ends.length === 1);
    const disconnected = nextEvent(client, 'disconnect');
    await first.listener.close();
    for (const e of first.ends) e.destroy();
    await disconnected;
    // Long enough for the doubling (10, 20, 40, 80, 160, ...) to reach the cap.
    await waitUntil(() => delays.length >= 6, 20_000, 'six redials');
    const reconnected = nextEvent(client, 'reconnect', 20_000);
    const second = await server(port);
    // Counted, not timed: the redial already scheduled when the server came back (or the next one, if the one
    // under way was refused just before it listened) gets in, and no delay on the way is longer than maxDelay.
    const scheduled = delays.length;
    const [{ attempts }] = (await reconnected) as [{ attempts: number }];
    expect(attempts).toBeGreaterThanOrEqual(scheduled);
    expect(attempts).toBeLessThanOrEqual(scheduled + 1);
    expect(delays.slice(0, 6)).toEqual([10, 20, 40, 80, 160, maxDelay]);
    expect(delays.every((d) => d <= maxDelay)).toBe(true);
    await waitUntil(() => second.ends.length === 1);
    expect(second.ends.length).toBe(1);
    expect(client.state).toBe('connected');
    expect(second.ends[0]!.clientId).toBe(client.clientId);
  });

  it('leaves no timers, sockets or servers behind after close(), even after reconnects', async () => {
    await delay(50);
    const baseline = resources();
    const { listener, ends } = await server();
    const proxy = new ChaosProxy({ target: listener.address(), killGraceMs: 200 });
    await proxy.start();
    const client = await dial(proxy.address(), {
      heartbeatInterval: 200,
      reconnect: { minDelay: 5, maxDelay: 50 },
    });
    try {
      await client.register('ping', () => 'pong');
      for (let i = 0; i < 4; i++) {
        const back = nextEvent(client, 'reconnect');
        if (i % 2 === 0) proxy.killAll();
        else proxy.resetAll();
        await back;
      }
      await waitUntil(() => ends.length === 5);
      const current = ends[4]!;
      await current.waitRemoteMethods(['ping'], { timeout: 2000 });
      expect((await current.call('ping')).data.toString()).toBe('pong');
      await client.close();
      expect(client.state).toBe('closed');
      expect(client.closeError).toBeUndefined();
    } finally {
      client.destroy();
      await proxy.close();
      await listener.close();
      for (const e of ends) e.destroy();
    }
    expectNoMoreThan(await settledTo(baseline), baseline);
  });
});

// ---- a fake server: node:net, the frame codec, and a handshake ----

class FakeServer {
  peer: RawPeer | undefined;

  private constructor(private readonly server: net.Server) {}

  /** Answers Conn with ConnAck (ClientID 0x55), Heartbeats, Registers and the DisConn exchange, like a peer. */
  static async start(): Promise<FakeServer> {
    const server = net.createServer();
    const fake = new FakeServer(server);
    server.on('connection', (socket) => {
      fake.peer = new RawPeer(socket);
      fake.peer.onPacket = (p) => fake.answer(p);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    cleanups.push(() => fake.close());
    return fake;
  }

  get port(): number {
    return (this.server.address() as net.AddressInfo).port;
  }

  send(...packets: Packet[]): void {
    this.peer?.send(...packets.map(encodePacket));
  }

  /** The first packet not yet taken that matches; rejects after `timeout` ms. */
  next(match: (p: Packet) => boolean, timeout = 3000): Promise<Packet> {
    if (!this.peer) return Promise.reject(new Error('no client connected'));
    return this.peer.next(match, timeout);
  }

  async close(): Promise<void> {
    this.peer?.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private answer(p: Packet): void {
    switch (p.type) {
      case T.Conn:
        return this.send({ type: T.ConnAck, id: p.id, retCode: 0, clientId: 0x55n, data: {} });
      case T.Heartbeat:
        return this.send({ type: T.HeartbeatAck, id: p.id });
      case T.Register:
        return this.send({ type: T.RegisterAck, id: p.id, sessionId: p.sessionId, data: {} });
      case T.DisConn:
        this.send({ type: T.DisConnAck, id: p.id, retCode: 0, data: {} }, { type: T.DisConn, id: 0x9999n });
        return;
      case T.DisConnAck:
        this.peer?.socket.end();
        return;
      case T.Dismiss:
        this.send({ type: T.DismissAck, id: p.id, sessionId: p.sessionId, data: {} });
        return;
      default:
    }
  }
}

/** Resolves true if `p` settles within `ms`, false otherwise. */
async function settlesWithin(p: Promise<unknown>, ms: number): Promise<boolean> {
  let settled = false;
  p.then(
    () => (settled = true),
    () => (settled = true),
  );
  await delay(ms);
  return settled;
}

describe('bad input (issue 3)', () => {
  async function connected(): Promise<{ fake: FakeServer; end: End }> {
    const fake = await FakeServer.start();
    const end = await dial({ host: '127.0.0.1', port: fake.port });
    cleanups.push(() => end.destroy());
    expect(end.clientId).toBe(0x55n);
    return { fake, end };
  }

  /** An RPC round trip the fake server drives: the client's handler still answers on stream 1. */
  async function stillServes(fake: FakeServer, end: End, id: bigint): Promise<void> {
    fake.send({
      type: T.Request,
      id,
      sessionId: 1n,
      data: { key: Buffer.from('hello'), value: Buffer.from('x') },
    });
    const rsp = await fake.next((p) => p.type === T.Response && p.id === id);
    expect((rsp as { data: { value?: Buffer } }).data.value?.toString()).toBe('hello:x');
    expect(end.closeError).toBeUndefined();
    expect(end.destroyed).toBe(false);
  }

  it('a Response for an unknown PacketID is ignored; the connection stays up', async () => {
    const { fake, end } = await connected();
    await end.register('hello', ({ data }) => `hello:${data}`);
    fake.send(
      { type: T.Response, id: 0xdead_beefn, sessionId: 1n, data: { value: Buffer.from('nobody asked') } },
      { type: T.Response, id: 0xdead_bef0n, sessionId: 1n, data: { error: 'nobody asked either' } },
      { type: T.MessageAck, id: 0xdead_bef1n, sessionId: 1n, data: {} },
    );
    await stillServes(fake, end, 0x301n);
    expect(end.channel.rpc.unmatchedResponses).toBe(2);
    expect(end.channel.messaging.unmatchedAcks).toBe(1);
  });

  it('a MessageAck or Response on the wrong stream settles nothing; the right one does', async () => {
    const { fake, end } = await connected();
    await end.register('hello', ({ data }) => `hello:${data}`);
    // A second stream, opened by the (fake) server with its own ID.
    const otherId = 0x4400n;
    const accepted = end.acceptStream();
    fake.send({ type: T.Session, id: 0x401n, priority: 0, flags: 0, negotiateId: otherId, data: {} });
    await fake.next((p) => p.type === T.SessionAck && p.id === 0x401n);
    const other = await accepted;
    expect(other.streamId).toBe(otherId);

    const published = end.publish('on stream 1', { timeout: 3000 });
    const msg = await fake.next((p) => p.type === T.Message);
    const called = end.call('method', 'on stream 1', { timeout: 3000 });
    const req = await fake.next((p) => p.type === T.Request);
    expect(msg).toMatchObject({ sessionId: 1n });
    expect(req).toMatchObject({ sessionId: 1n });

    // Same PacketIDs, wrong streams: the other stream, an unknown stream.
    for (const sessionId of [otherId, 0x7777n]) {
      fake.send(
        { type: T.MessageAck, id: msg.id, sessionId, data: {} },
        { type: T.Response, id: req.id, sessionId, data: { value: Buffer.from('wrong') } },
      );
    }
    expect(await settlesWithin(published, 150)).toBe(false);
    expect(await settlesWithin(called, 0)).toBe(false);
    expect(other.channel.messaging.unmatchedAcks).toBe(1);
    expect(other.channel.rpc.unmatchedResponses).toBe(1);
    expect(end.session.unknownStreamPackets).toBe(2);

    fake.send(
      { type: T.MessageAck, id: msg.id, sessionId: 1n, data: {} },
      { type: T.Response, id: req.id, sessionId: 1n, data: { value: Buffer.from('right') } },
    );
    await published;
    expect((await called).data.toString()).toBe('right');
    await stillServes(fake, end, 0x402n);
    expect(other.destroyed).toBe(false);
  });

  it('a Register with an empty method name gets a RegisterAck with an error', async () => {
    const { fake, end } = await connected();
    await end.register('hello', ({ data }) => `hello:${data}`);
    fake.send({ type: T.Register, id: 0x501n, sessionId: 1n, method: Buffer.alloc(0) });
    const ack = await fake.next((p) => p.type === T.RegisterAck && p.id === 0x501n);
    expect(ack).toMatchObject({ sessionId: 1n });
    expect((ack as { data: { error?: string } }).data.error).toEqual(expect.stringMatching(/\S/));
    expect(end.remoteMethods.has('')).toBe(false);
    await stillServes(fake, end, 0x502n);
  });

  it('a Register with an empty method name, sent to a real server, gets an error RegisterAck', async () => {
    const { listener, ends } = await server();
    const socket = net.connect({ host: '127.0.0.1', port: listener.address().port });
    cleanups.push(() => socket.destroy());
    socket.on('error', () => {});
    const got: Packet[] = [];
    const decoder = new FrameDecoder();
    socket.on('data', (chunk: Buffer) => decoder.push(chunk, (p) => got.push(p)));
    socket.write(encodePacket({ type: T.Conn, id: 0x601n, flags: 0x18, clientId: 0n, data: {} }));
    await waitUntil(() => got.some((p) => p.type === T.ConnAck), 3000, 'ConnAck');
    socket.write(encodePacket({ type: T.Register, id: 0x602n, sessionId: 1n, method: Buffer.alloc(0) }));
    await waitUntil(() => got.some((p) => p.type === T.RegisterAck), 3000, 'RegisterAck');
    const ack = got.find((p) => p.type === T.RegisterAck)!;
    expect(ack).toMatchObject({ id: 0x602n, sessionId: 1n });
    expect((ack as { data: { error?: string } }).data.error).toEqual(expect.stringMatching(/\S/));
    await waitUntil(() => ends.length === 1);
    expect(ends[0]!.remoteMethods.size).toBe(0);
    expect(ends[0]!.closeError).toBeUndefined();
  });

  it("a handler that never returns: the caller's timeout fires, nothing leaks, both sides close cleanly", async () => {
    await delay(50);
    const baseline = resources();
    const listener = await listen('127.0.0.1:0');
    let serverEnd: End | undefined;
    let client: End | undefined;
    try {
      [client, serverEnd] = await Promise.all([dial(listener.address()), listener.acceptEnd()]);
      let started = 0;
      let aborted = 0;
      await serverEnd.register('hang', ({ signal }) => {
        started++;
        signal.addEventListener('abort', () => aborted++);
        return new Promise(() => {}); // never settles, ignores its signal
      });
      const t0 = Date.now();
      const err = await client.call('hang', 'x', { timeout: 200 }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(TimeoutError);
      // The 200 ms given, not the 30 s default (bounded far above 200 ms: timers run late on a loaded machine).
      expect(Date.now() - t0).toBeGreaterThanOrEqual(195);
      expect(Date.now() - t0).toBeLessThan(10_000);
      expect(started).toBe(1);
      // The handler's deadline timer fires (aborting its signal) and is then gone.
      await waitUntil(() => aborted === 1, 2000, 'handler signal aborted at the deadline');
      // Both ends still work.
      await client.register('ok', () => 'fine');
      expect((await serverEnd.call('ok')).data.toString()).toBe('fine');

      const serverClosed = nextEvent(serverEnd, 'close', 3000);
      await client.close();
      await serverClosed;
      expect(client.closeError).toBeUndefined();
      expect(serverEnd.closeError).toBeUndefined();
    } finally {
      client?.destroy();
      serverEnd?.destroy();
      await listener.close();
    }
    expectNoMoreThan(await settledTo(baseline), baseline);
  });
});

describe('a reconnect the server has not noticed yet (half-open old connection)', () => {
  // The old connection is half-open (its packets vanish, but the server has not timed it out: 2 x the declared
  // heartbeat interval, 10 s here). The listener never hands out a live ClientID, except to a client that shows
  // that ID's resume secret (given in its first ConnAck): then the old connection is closed as replaced, the
  // client keeps its ClientID and delivery window, and the replay of a message whose ack was lost is not
  // delivered twice.
  it('keeps the ClientID and delivers a replayed message once', async () => {
    const { listener, ends } = await server(0, (end) => {
      (async () => {
        for (;;) {
          const m = await end.receive();
          deliveries.push(`${end.clientId}:${m.data}`);
          m.done();
        }
      })().catch(() => {});
    });
    const deliveries: string[] = [];
    // A forwarder whose first connection can be frozen: nothing passes either way, neither side is closed.
    const frozen = new Set<net.Socket>();
    const sockets: net.Socket[] = [];
    const forwarder = net.createServer((a) => {
      const b = net.connect(listener.address().port, '127.0.0.1');
      sockets.push(a, b);
      for (const [from, to] of [
        [a, b],
        [b, a],
      ] as const) {
        from.on('error', () => {});
        from.on('data', (d: Buffer) => {
          if (!frozen.has(from)) to.write(d);
        });
        from.on('close', () => {
          if (!frozen.has(from)) to.destroy();
        });
      }
    });
    await new Promise<void>((resolve) => forwarder.listen(0, '127.0.0.1', resolve));
    cleanups.push(async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => forwarder.close(() => resolve()));
    });
    const client = await dial((forwarder.address() as net.AddressInfo).port, {
      heartbeatInterval: 100,
      heartbeatTimeout: 400,
      reconnect: { minDelay: 20, maxDelay: 100 },
    });
    cleanups.push(() => client.destroy());
    const firstId = client.clientId;
    const [clientSide, serverSide] = [sockets[0]!, sockets[1]!];
    frozen.add(serverSide); // server -> client: the ack will be lost
    const published = client.publish('m1', { timeout: 5000 });
    await waitUntil(() => deliveries.length === 1, 2000, 'first delivery');
    frozen.add(clientSide); // now nothing passes: a half-open connection
    await nextEvent(client, 'reconnect', 5000);
    await published;
    await delay(100);
    expect(ends.length).toBe(2);
    expect(ends[0]!.destroyed).toBe(true); // replaced by the reconnect, not left to time out
    expect(ends[0]!.closeError?.message).toContain('replaced');
    expect(client.clientId).toBe(firstId);
    expect(deliveries).toEqual([`${firstId}:m1`]);
  });
});
