/** Messaging over a fake port with a fake clock: acks, timeouts, replay after a reconnect, duplicate drop. */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { DeliveryWindow } from '../../../sdk/channel/delivery-window.js';
import { Messenger } from '../../../sdk/channel/messaging.js';
import { ConnectionClosedError, TimeoutError } from '../../../sdk/errors.js';
import { type MessagePacket, PacketType as T } from '../../../sdk/frame/index.js';
import { FakePort } from '../../helpers/fakes.js';

beforeEach(() => vi.useFakeTimers());
afterEach(() => vi.useRealTimers());

const message = (id: bigint, value: string): MessagePacket => ({
  type: T.Message,
  id,
  sessionId: 1n,
  data: { value: Buffer.from(value) },
});

describe('Messenger', () => {
  it('resolves a publish on its ack; times out without one', async () => {
    const port = new FakePort();
    const m = new Messenger(port);
    const acked = m.publish('a');
    const sent = port.sent[0] as MessagePacket;
    expect(sent.data.value?.toString()).toBe('a');
    m.handlePacket({ type: T.MessageAck, id: sent.id, sessionId: 1n, data: {} });
    await acked;
    const lost = m.publish('b', { timeout: 500 });
    const failed = expect(lost).rejects.toBeInstanceOf(TimeoutError);
    await vi.advanceTimersByTimeAsync(500);
    await failed;
    expect(vi.getTimerCount()).toBe(0);
  });

  it('replays every unacknowledged message with its PacketID; the receiver delivers each once', async () => {
    const sender = new FakePort();
    const out = new Messenger(sender);
    const first = out.publish('one');
    const second = out.publish('two');
    const ids = sender.sent.map((p) => p.id);
    // The connection drops; a reconnected End sends them again, same frames.
    out.resend();
    expect(sender.sent.map((p) => p.id)).toEqual([...ids, ...ids]);

    // The receiving End keeps the ClientID's window across connections: a replay is acked, not delivered again.
    const receiver = new FakePort();
    const window = new DeliveryWindow(16);
    const before = new Messenger(receiver);
    before.window = window;
    const after = new Messenger(receiver);
    after.window = window;
    before.handlePacket(sender.sent[0] as MessagePacket);
    (await before.receive()).done();
    after.handlePacket(sender.sent[2] as MessagePacket); // the replay of 'one'
    after.handlePacket(sender.sent[3] as MessagePacket); // 'two', first seen after the reconnect
    const got = await after.receive();
    expect(got.data.toString()).toBe('two');
    got.done();
    const acks = receiver.sent.filter((p) => p.type === T.MessageAck).map((p) => p.id);
    expect(acks.sort()).toEqual([ids[0], ids[0], ids[1]].sort());
    for (const id of [ids[0]!, ids[1]!])
      out.handlePacket({ type: T.MessageAck, id, sessionId: 1n, data: {} });
    await Promise.all([first, second]);
  });

  it('a full receive queue pauses reading; draining it below half resumes', async () => {
    const port = new FakePort({ receiveQueue: 4 });
    const m = new Messenger(port);
    for (let i = 0; i < 4; i++) m.handlePacket(message(BigInt(10 + i), `m${i}`));
    expect(port.paused.has(m)).toBe(true);
    await m.receive();
    await m.receive();
    expect(port.paused.has(m)).toBe(true);
    await m.receive();
    expect(port.paused.has(m)).toBe(false);
  });

  it('close fails what waits for an ack and what waits to receive', async () => {
    const m = new Messenger(new FakePort());
    const publish = m.publish('x');
    const receive = m.receive();
    const err = new ConnectionClosedError('gone');
    m.close(err);
    await expect(publish).rejects.toBe(err);
    await expect(receive).rejects.toBe(err);
    expect(vi.getTimerCount()).toBe(0);
  });
});
