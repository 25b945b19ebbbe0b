/**
 * onReconnect: the application's own re-setup runs after a reconnect and before the unacknowledged messages are
 * sent again. The broker here is mq-style: a connection must claim a topic before it may publish to it, and a
 * restarted broker has forgotten every claim.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { dial, type End, type Listener, listen } from '../../sdk/index.js';
import { delay, once } from '../helpers/pair.js';

const TOPIC = 'orders';

/** A broker: 'claim' registers the caller's connection for a topic; a message to an unclaimed topic is refused. */
interface Broker {
  listener: Listener;
  received: string[];
  refused: string[];
  ends: End[];
}

async function startBroker(port = 0, received: string[] = [], refused: string[] = []): Promise<Broker> {
  const listener = await listen({ host: '127.0.0.1', port });
  const broker: Broker = { listener, received, refused, ends: [] };
  void (async () => {
    for await (const end of listener) {
      broker.ends.push(end);
      const claimed = new Set<string>();
      await end.register('claim', ({ data }) => {
        claimed.add(data.toString());
        return 'ok';
      });
      void (async () => {
        for await (const m of end.messages()) {
          if (!m.topic || !claimed.has(m.topic)) {
            refused.push(m.data.toString());
            m.error('no such topic');
            continue;
          }
          received.push(m.data.toString());
          m.done();
        }
      })().catch(() => {});
    }
  })().catch(() => {});
  return broker;
}

async function stopBroker(b: Broker): Promise<void> {
  await b.listener.close();
  for (const e of b.ends) e.destroy();
}

const cleanup: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanup.splice(0)) await c();
});

describe('onReconnect', () => {
  it('re-claims the topic before the replay: a broker restart mid-stream loses and refuses nothing', async () => {
    let broker = await startBroker();
    const { port } = broker.listener.address();
    const claims: number[] = [];
    const producer = await dial(broker.listener.address(), {
      reconnect: { minDelay: 20, maxDelay: 100 },
      waitRemoteRpcs: ['claim'],
      onReconnect: async (end) => {
        await end.call('claim', TOPIC);
        claims.push(Date.now());
      },
    });
    cleanup.push(() => producer.destroy());
    await producer.call('claim', TOPIC);

    const n = 200;
    const results: Array<Promise<void>> = [];
    const received = broker.received;
    const refused = broker.refused;
    for (let i = 0; i < n; i++) {
      results.push(producer.publish(String(i), { topic: TOPIC }));
      if (i === n / 2) {
        // Restart the broker while publishes are in flight: it forgets the claim.
        const reconnected = once(producer, 'reconnect');
        await stopBroker(broker);
        broker = await startBroker(port, received, refused);
        await reconnected;
      }
      if (i % 10 === 0) await delay(1);
    }
    cleanup.push(() => stopBroker(broker));
    const outcomes = await Promise.allSettled(results);
    const rejected = outcomes.filter((o) => o.status === 'rejected');
    expect(rejected.map((r) => String((r as PromiseRejectedResult).reason))).toEqual([]);
    expect(refused).toEqual([]);
    expect(claims.length).toBe(1);
    // At least once: every message arrived (a replay may arrive twice).
    expect(new Set(received).size).toBe(n);
  });

  it('a hook that never finishes is bounded by reconnectSetupTimeout: the End redials', async () => {
    const broker = await startBroker();
    cleanup.push(() => stopBroker(broker));
    let calls = 0;
    const client = await dial(broker.listener.address(), {
      reconnect: { minDelay: 10, maxDelay: 50 },
      reconnectSetupTimeout: 100,
      onReconnect: () => {
        calls++;
        // The first re-setup hangs; the second succeeds.
        return calls === 1 ? new Promise(() => {}) : undefined;
      },
    });
    cleanup.push(() => client.destroy());
    while (broker.ends.length === 0) await delay(5);
    const reconnected = once(client, 'reconnect');
    broker.ends[0]!.destroy();
    await reconnected;
    expect(calls).toBe(2);
    expect(client.state).toBe('connected');
  });
});
