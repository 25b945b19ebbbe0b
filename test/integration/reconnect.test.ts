import diagnostics from 'node:diagnostics_channel';
import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  CHANNELS,
  ConnectionClosedError,
  dial,
  type End,
  type EndReconnectingMessage,
  type Listener,
  listen,
} from '../../sdk/index.js';
import { delay, once } from '../helpers/pair.js';
import { waitUntil } from '../helpers/wait.js';

const open: Array<{ close(): Promise<void> } | End> = [];
afterEach(async () => {
  for (const o of open.splice(0)) {
    if ('destroy' in o) o.destroy();
    else await o.close();
  }
});

async function server(port = 0): Promise<Listener> {
  const l = await listen({ host: '127.0.0.1', port });
  open.push(l);
  return l;
}

describe('client auto-reconnect', () => {
  it('redials after the connection drops, keeps its ClientID and re-registers its methods', async () => {
    const listener = await server();
    const client = await dial(listener.address(), { reconnect: { minDelay: 20, maxDelay: 200 } });
    open.push(client);
    await client.register('ping', () => 'pong');
    const first = await listener.acceptEnd();
    const id = client.clientId;
    const events: string[] = [];
    client.on('disconnect', () => events.push('disconnect'));
    const reconnected = once(client, 'reconnect');
    first.destroy();
    const second = await listener.acceptEnd();
    await reconnected;
    expect(events).toEqual(['disconnect']);
    expect(client.state).toBe('connected');
    expect(second.clientId).toBe(id);
    expect(client.clientId).toBe(id);
    await second.waitRemoteMethods(['ping'], { timeout: 2000 });
    expect((await second.call('ping')).data.toString()).toBe('pong');
    second.destroy();
  });

  it('survives a graceful close by the server (stream 1 dismissed, then DisConn) and reconnects', async () => {
    const listener = await server();
    const client = await dial(listener.address(), { reconnect: { minDelay: 20, maxDelay: 100 } });
    open.push(client);
    await client.register('ping', () => 'pong');
    const first = await listener.acceptEnd();
    const closed: string[] = [];
    client.on('close', () => closed.push('close'));
    const reconnected = once(client, 'reconnect');
    await first.close(); // dismisses every stream, the default one included, then DisConn
    const second = await listener.acceptEnd();
    await reconnected;
    expect(closed).toEqual([]);
    expect(client.destroyed).toBe(false);
    await second.waitRemoteMethods(['ping'], { timeout: 2000 });
    expect((await second.call('ping')).data.toString()).toBe('pong');
    // Raw bytes on the default stream still work on the new connection.
    const got = new Promise<Buffer>((r) => second.once('data', r));
    client.write('after');
    expect((await got).toString()).toBe('after');
    second.destroy();
  });

  it('failFast: opens fail at once while reconnecting, and an accept loop waits instead of spinning', async () => {
    const listener = await server();
    const client = await dial(listener.address(), {
      reconnect: { minDelay: 50, maxDelay: 100, failFast: true },
    });
    open.push(client);
    const accepted: string[] = [];
    void (async () => {
      for await (const s of client.streams()) {
        accepted.push(s.meta.toString());
        s.destroy();
      }
    })();
    const first = await listener.acceptEnd();
    const reconnected = once(client, 'reconnect');
    first.destroy();
    await once(client, 'disconnect');
    await expect(client.openStream()).rejects.toBeInstanceOf(ConnectionClosedError);
    // A loop that spun on the failing accept would starve the timers: the reconnect would never come.
    const second = await listener.acceptEnd();
    await reconnected;
    await second.openStream({ meta: 'after' });
    await vi.waitFor(() => expect(accepted).toEqual(['after']));
    second.destroy();
  });

  it('the End is one Duplex across connections: bytes written while reconnecting go out on the next one', async () => {
    const listener = await server();
    const client = await dial(listener.address(), { reconnect: { minDelay: 50, maxDelay: 100 } });
    open.push(client);
    const first = await listener.acceptEnd();
    const fromFirst = new Promise<Buffer>((r) => client.once('data', r));
    first.write('one');
    expect((await fromFirst).toString()).toBe('one');
    const disconnected = once(client, 'disconnect');
    first.destroy();
    await disconnected;
    expect(client.state).toBe('reconnecting');
    // Written while there is no connection: held by the End, sent once the new connection is set up.
    const written = new Promise<Error | null | undefined>((r) => client.write('during', r));
    const second = await listener.acceptEnd();
    const got = new Promise<Buffer>((r) => second.once('data', r));
    expect((await got).toString()).toBe('during');
    expect(await written).toBeFalsy();
    // And the same End reads what the new connection's default stream carries.
    const fromSecond = new Promise<Buffer>((r) => client.once('data', r));
    second.write('two');
    expect((await fromSecond).toString()).toBe('two');
    expect(client.destroyed).toBe(false);
    second.destroy();
  });

  it('fails in-flight calls fast with a retryable error; calls made while reconnecting wait', async () => {
    const listener = await server();
    const client = await dial(listener.address(), { reconnect: { minDelay: 50, maxDelay: 100 } });
    open.push(client);
    const first = await listener.acceptEnd();
    await first.register('hang', () => new Promise(() => {}));
    const inflight = client.call('hang');
    await delay(20);
    first.destroy();
    const err = await inflight.catch((e) => e);
    expect(err).toBeInstanceOf(ConnectionClosedError);
    expect(err.retryable).toBe(true);
    expect(client.state).toBe('reconnecting');
    const waiting = client.call('echo', 'later', { timeout: 5000 });
    const second = await listener.acceptEnd();
    await second.register('echo', ({ data }) => data);
    expect((await waiting).data.toString()).toBe('later');
    second.destroy();
  });

  it('replays unacknowledged messages with the same PacketID; the receiver sees each once', async () => {
    const listener = await server();
    const client = await dial(listener.address(), { reconnect: { minDelay: 20, maxDelay: 100 } });
    open.push(client);
    const first = await listener.acceptEnd();
    const sent = client.publish('m1');
    const original = await first.receive(); // delivered, but not acknowledged before the drop
    first.destroy();
    const second = await listener.acceptEnd();
    // The replay arrives on the new End and is not delivered again; the original's ack answers it.
    const extra = second.receive();
    let duplicate = false;
    extra.then(() => {
      duplicate = true;
    });
    await delay(100);
    expect(duplicate).toBe(false);
    original.done(); // acked on the old End: the window answers the replay on the new one
    await sent;
    const next = client.publish('m2');
    const m2 = await extra;
    expect(m2.data.toString()).toBe('m2');
    m2.done();
    await next;
    second.destroy();
  });

  it('comes back after a server restart within maxDelay', async () => {
    const listener = await server();
    const { port } = listener.address();
    const client = await dial(listener.address(), { reconnect: { minDelay: 20, maxDelay: 300, jitter: 0 } });
    open.push(client);
    const delays: number[] = [];
    const onReconnecting = (m: unknown) => delays.push((m as EndReconnectingMessage).delayMs);
    diagnostics.subscribe(CHANNELS.endReconnecting, onReconnecting);
    open.push({
      close: async () => {
        diagnostics.unsubscribe(CHANNELS.endReconnecting, onReconnecting);
      },
    });
    const first = await listener.acceptEnd();
    await listener.close();
    first.destroy();
    await once(client, 'disconnect');
    // Long enough for the doubling (20, 40, 80, 160, ...) to reach the 300 ms cap.
    await waitUntil(() => delays.length >= 6, 20_000, 'six redials');
    const reconnected = once(client, 'reconnect');
    const restarted = await server(port);
    // Counted, not timed: the redial already scheduled when the server came back (or, if one was refused just
    // before it listened, the next one) gets in; no delay on the way is longer than maxDelay.
    const scheduled = delays.length;
    const end = await restarted.acceptEnd();
    expect(end.clientId).not.toBe(0n);
    const [{ attempts }] = (await reconnected) as [{ attempts: number }];
    expect(attempts).toBeGreaterThanOrEqual(scheduled);
    expect(attempts).toBeLessThanOrEqual(scheduled + 1);
    expect(delays.slice(0, 5)).toEqual([20, 40, 80, 160, 300]);
    expect(delays.every((d) => d <= 300)).toBe(true);
    end.destroy();
  });

  it('gives up after maxAttempts and closes with a typed error', async () => {
    const listener = await server();
    const client = await dial(listener.address(), {
      reconnect: { minDelay: 10, maxDelay: 20, maxAttempts: 3 },
    });
    const first = await listener.acceptEnd();
    await listener.close();
    first.destroy();
    await once(client, 'close');
    expect(client.state).toBe('closed');
    expect(client.closeError).toBeInstanceOf(ConnectionClosedError);
    await expect(client.call('x')).rejects.toBeInstanceOf(ConnectionClosedError);
  });

  it('close() while reconnecting stops the loop and leaves nothing behind', async () => {
    const listener = await server();
    const client = await dial(listener.address(), { reconnect: { minDelay: 1000, maxDelay: 1000 } });
    const first = await listener.acceptEnd();
    first.destroy();
    await once(client, 'disconnect');
    await client.close();
    expect(client.state).toBe('closed');
    expect(client.destroyed).toBe(true);
  });
});
