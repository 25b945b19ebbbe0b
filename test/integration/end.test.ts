import { EventEmitter } from 'node:events';
import { Readable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import {
  ConnectionClosedError,
  HandshakeRejectedError,
  NoSuchMethodError,
  RemoteError,
  TimeoutError,
} from '../../sdk/index.js';
import { randomBytes, readAll, sha256, tcpPair } from '../helpers/pair.js';

let cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanups) await c();
  cleanups = [];
});

async function pair(...args: Parameters<typeof tcpPair>) {
  const p = await tcpPair(...args);
  cleanups.push(p.cleanup);
  return p;
}

describe('Node End <-> Node End over TCP', () => {
  it('iterating an End reads its bytes like any Readable; end.streams() iterates the accepted streams', async () => {
    const { client, server } = await pair();
    const opened = client.openStream({ meta: 'one' });
    const iterator = server.streams()[Symbol.asyncIterator]();
    const first = await iterator.next();
    expect(first.done).toBe(false);
    expect(first.value!.meta.toString()).toBe('one');
    await opened;
    await iterator.return?.();
    // The default stream's bytes: toArray() (which uses the async iterator) gets Buffers, not Streams.
    const all = server.toArray();
    client.end('raw bytes');
    const chunks = (await all) as Buffer[];
    expect(chunks.every((c) => Buffer.isBuffer(c))).toBe(true);
    expect(Buffer.concat(chunks).toString()).toBe('raw bytes');
  });

  it('handshakes: the server assigns a non-zero ClientID both sides agree on, meta travels', async () => {
    const { client, server } = await pair({ meta: 'alice' });
    expect(client.clientId).toBeGreaterThan(0n);
    expect(server.clientId).toBe(client.clientId);
    expect(server.meta.toString()).toBe('alice');
    expect(client.role).toBe('client');
    expect(server.role).toBe('server');
  });

  it('ignores a proposed ClientID unless the hook approves it', async () => {
    const a = await pair({ clientId: 42n });
    expect(a.client.clientId).not.toBe(42n);
    const b = await pair({ clientId: 42n }, { onConnect: (info) => info.proposedClientId });
    expect(b.client.clientId).toBe(42n);
  });

  it('a hook that throws refuses the connection with its message', async () => {
    const { listen, dial } = await import('../../sdk/index.js');
    const listener = await listen('127.0.0.1:0', {
      onConnect: () => {
        throw new Error('go away');
      },
    });
    cleanups.push(() => listener.close());
    const err = await dial(listener.address()).catch((e) => e);
    expect(err).toBeInstanceOf(HandshakeRejectedError);
    expect(err.message).toBe('go away');
    expect(err.code).toBe('GEMINIO_ERR_HANDSHAKE_REJECTED');
  });

  it('opens streams from both sides with meta, carries 8 MiB each way intact', async () => {
    const { client, server } = await pair();
    const payload = randomBytes(8 * 1024 * 1024);
    for (const [opener, acceptor] of [
      [client, server],
      [server, client],
    ] as const) {
      const [s1, s2] = await Promise.all([
        opener.openStream({ meta: 'm1', peer: 'p' }),
        acceptor.acceptStream(),
      ]);
      expect(s2.meta.toString()).toBe('m1');
      expect(s2.peer).toBe('p');
      expect(s1.streamId).toBe(s2.streamId);
      expect(s1.streamId).toBeGreaterThan(1n);
      const received = readAll(s2);
      Readable.from([payload.subarray(0, 3_000_000), payload.subarray(3_000_000)]).pipe(s1);
      expect(sha256(await received)).toBe(sha256(payload));
    }
  });

  it('openStream with a signal: abort is a typed error, and a finished open leaves no listener behind', async () => {
    const { client, server } = await pair();
    const ctl = new AbortController();
    const [s] = await Promise.all([client.openStream({ signal: ctl.signal }), server.acceptStream()]);
    expect(s.streamId).toBeGreaterThan(1n);
    expect(EventEmitter.getEventListeners(ctl.signal, 'abort')).toHaveLength(0);
    const aborted = new AbortController();
    const open = client.openStream({ signal: aborted.signal });
    aborted.abort();
    await expect(open).rejects.toMatchObject({ code: 'GEMINIO_ERR_ABORTED' });
    expect(EventEmitter.getEventListeners(aborted.signal, 'abort')).toHaveLength(0);
  });

  it('raw bytes on the default stream', async () => {
    const { client, server } = await pair();
    const got = new Promise<Buffer>((resolve) => server.once('data', resolve));
    client.write('hello');
    expect((await got).toString()).toBe('hello');
  });

  it('end() on a stream ends the other side cleanly and both finalize', async () => {
    const { client, server } = await pair();
    const [a, b] = await Promise.all([client.openStream(), server.acceptStream()]);
    a.resume(); // the peer's Dismiss ends a's readable side; it must be read for 'close'
    a.end('bye');
    expect((await readAll(b)).toString()).toBe('bye');
    await new Promise((r) => a.once('close', r));
    expect(client.listStreams()).toHaveLength(0);
    expect(server.listStreams()).toHaveLength(0);
  });

  it('RPC both ways, errors, unknown methods and timeouts', async () => {
    const { client, server } = await pair();
    await server.register('echo', ({ data }) => data);
    await client.register('whoami', ({ clientId }) => String(clientId));
    await server.register('fail', () => {
      throw new Error('boom');
    });
    await server.register(
      'hang',
      () => new Promise(() => {}), // never answers: the caller's own timeout must fire
    );
    expect((await client.call('echo', 'hi')).data.toString()).toBe('hi');
    expect((await server.call('whoami')).data.toString()).toBe(String(client.clientId));
    await expect(client.call('fail')).rejects.toBeInstanceOf(RemoteError);
    await expect(client.call('fail')).rejects.toThrow('boom');
    await expect(client.call('nope')).rejects.toBeInstanceOf(NoSuchMethodError);
    await expect(client.call('hang', '', { timeout: 50 })).rejects.toBeInstanceOf(TimeoutError);
    expect(client.remoteMethods.has('echo')).toBe(true);
  });

  it('acked messages both ways, with topic, custom and error acks', async () => {
    const { client, server } = await pair();
    const p = client.publish('hello', { topic: 't', custom: 'c' });
    const m = await server.receive();
    expect(m.data.toString()).toBe('hello');
    expect(m.topic).toBe('t');
    expect(m.custom?.toString()).toBe('c');
    m.done();
    await p;
    const q = server.publish('x');
    (await client.receive()).error('nope');
    await expect(q).rejects.toThrow('nope');
    await expect(client.publish('never acked', { timeout: 50 })).rejects.toBeInstanceOf(TimeoutError);
  });

  it('close() from the client: the server End sees a clean end', async () => {
    const { client, server } = await pair();
    const [s1, s2] = await Promise.all([client.openStream(), server.acceptStream()]);
    s2.resume();
    const serverClosed = new Promise((r) => server.once('close', r));
    s1.write('x');
    await client.close();
    await serverClosed;
    expect(server.closeError).toBeUndefined();
    expect(server.errored).toBeNull();
    await expect(server.acceptStream()).rejects.toBeInstanceOf(ConnectionClosedError);
  });

  it('destroy() makes pending calls on the other side fail with a retryable typed error', async () => {
    const { client, server } = await pair();
    await server.register('hang', () => new Promise(() => {}));
    const call = client.call('hang');
    await new Promise((r) => setTimeout(r, 20));
    server.destroy();
    const err = await call.catch((e) => e);
    expect(err).toBeInstanceOf(ConnectionClosedError);
    expect(err.retryable).toBe(true);
  });
});
