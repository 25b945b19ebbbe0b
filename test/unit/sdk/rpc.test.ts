/** RPC over a fake port with a fake clock: timeouts, aborts and RequestCancel both ways. */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { RpcEndpoint } from '../../../sdk/channel/rpc.js';
import { AbortError, NoSuchMethodError, TimeoutError } from '../../../sdk/errors.js';
import { CancelType, type MessagePacket, PacketType as T } from '../../../sdk/frame/index.js';
import { FakePort } from '../../helpers/fakes.js';

beforeEach(() => vi.useFakeTimers());
afterEach(() => vi.useRealTimers());

const request = (id: bigint, method: string, deadline?: number): MessagePacket => ({
  type: T.Request,
  id,
  sessionId: 1n,
  data: { key: Buffer.from(method), value: Buffer.from('in'), deadline },
});

/** An endpoint with a handler "wait" that never answers, and the signal of its latest call. */
async function waitingHandler(): Promise<{ rpc: RpcEndpoint; signal: () => AbortSignal | undefined }> {
  const port = new FakePort();
  const rpc = new RpcEndpoint(port);
  let signal: AbortSignal | undefined;
  const registered = rpc.register('wait', (req) => {
    signal = req.signal;
    return new Promise(() => {});
  });
  rpc.handlePacket({ type: T.RegisterAck, id: port.sent[0]!.id, sessionId: 1n, data: {} });
  await registered;
  return { rpc, signal: () => signal };
}

describe('RpcEndpoint', () => {
  it('a call that times out fails with TimeoutError and tells a peer that understands RequestCancel', async () => {
    const port = new FakePort();
    const rpc = new RpcEndpoint(port);
    const call = rpc.call('slow', 'x', { timeout: 1000 });
    const [req] = port.sent;
    expect(req!.type).toBe(T.Request);
    const failed = expect(call).rejects.toBeInstanceOf(TimeoutError);
    await vi.advanceTimersByTimeAsync(999);
    expect(port.sent).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1);
    await failed;
    expect(port.sent[1]).toMatchObject({
      type: T.RequestCancel,
      id: req!.id,
      cancelType: CancelType.DeadlineExceeded,
    });
    // A late response matches nothing.
    rpc.handlePacket({ type: T.Response, id: req!.id, sessionId: 1n, data: { value: Buffer.from('late') } });
    expect(rpc.unmatchedResponses).toBe(1);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('an aborted call cancels (Canceled); a Go peer (no RequestCancel) is not sent one', async () => {
    for (const canCancel of [true, false]) {
      const port = new FakePort();
      port.canCancel = canCancel;
      const rpc = new RpcEndpoint(port);
      const ac = new AbortController();
      const call = rpc.call('m', 'x', { signal: ac.signal });
      ac.abort();
      await expect(call).rejects.toBeInstanceOf(AbortError);
      const cancels = port.sent.filter((p) => p.type === T.RequestCancel);
      expect(cancels).toEqual(
        canCancel ? [expect.objectContaining({ cancelType: CancelType.Canceled, id: port.sent[0]!.id })] : [],
      );
      expect(vi.getTimerCount()).toBe(0);
    }
  });

  it("RequestCancel from the caller aborts the running handler's signal", async () => {
    const port = new FakePort();
    const rpc = new RpcEndpoint(port);
    let signal: AbortSignal | undefined;
    await Promise.all([
      rpc.register('wait', (req) => {
        signal = req.signal;
        return new Promise((_, reject) =>
          req.signal.addEventListener('abort', () => reject(req.signal.reason)),
        );
      }),
      Promise.resolve().then(() =>
        rpc.handlePacket({ type: T.RegisterAck, id: port.sent[0]!.id, sessionId: 1n, data: {} }),
      ),
    ]);
    rpc.handlePacket(request(500n, 'wait'));
    await vi.advanceTimersByTimeAsync(0);
    expect(signal?.aborted).toBe(false);
    rpc.handlePacket({ type: T.RequestCancel, id: 500n, sessionId: 1n, cancelType: CancelType.Canceled });
    expect(signal?.aborted).toBe(true);
    await vi.advanceTimersByTimeAsync(0);
    const response = port.sent.find((p) => p.type === T.Response) as MessagePacket;
    expect(response.id).toBe(500n);
    expect(response.data.error).toMatch(/cancel/);
  });

  it("the caller's deadline aborts the handler when it passes", async () => {
    const { rpc, signal } = await waitingHandler();
    rpc.handlePacket(request(501n, 'wait', Date.now() + 2000));
    await vi.advanceTimersByTimeAsync(1999);
    expect(signal()?.aborted).toBe(false);
    await vi.advanceTimersByTimeAsync(1);
    expect(signal()?.aborted).toBe(true);
  });

  it("an error answer that comes once the deadline passed, before the call's timer ran, is the timeout", async () => {
    // Two timers are due at the same moment: ours and the handler's (aborted at the deadline it got). On a loaded
    // machine the handler's error can arrive first; it must not turn the timeout into a RemoteError.
    const port = new FakePort();
    const rpc = new RpcEndpoint(port);
    const call = rpc.call('slow', 'x', { timeout: 1000 });
    const failed = expect(call).rejects.toBeInstanceOf(TimeoutError);
    vi.setSystemTime(Date.now() + 1000); // the wall clock reached the deadline; the timer has not run yet
    rpc.handlePacket({
      type: T.Response,
      id: port.sent[0]!.id,
      sessionId: 1n,
      data: { error: 'deadline exceeded' },
    });
    await failed;
    expect(port.sent[1]).toMatchObject({ type: T.RequestCancel, cancelType: CancelType.DeadlineExceeded });
    expect(vi.getTimerCount()).toBe(0);
    // Before the deadline, an error answer is the handler's own.
    const early = rpc.call('slow', 'x', { timeout: 1000 });
    vi.setSystemTime(Date.now() + 999);
    rpc.handlePacket({ type: T.Response, id: port.sent[2]!.id, sessionId: 1n, data: { error: 'no' } });
    await expect(early).rejects.toMatchObject({ name: 'RemoteError', message: 'no' });
  });

  it("a handler's signal does not abort before the deadline by the wall clock, even if its timer fires early", async () => {
    const { rpc, signal } = await waitingHandler();
    const deadline = Date.now() + 2000;
    rpc.handlePacket(request(502n, 'wait', deadline));
    expect(signal()?.aborted).toBe(false);
    // The timer's clock and the wall clock disagree by a millisecond (they round differently).
    vi.setSystemTime(Date.now() - 1);
    await vi.advanceTimersByTimeAsync(2000);
    expect(Date.now()).toBe(deadline - 1);
    expect(signal()?.aborted).toBe(false);
    await vi.advanceTimersByTimeAsync(1);
    expect(signal()?.aborted).toBe(true);
    expect(signal()?.reason).toBeInstanceOf(TimeoutError);
  });

  it('a call to a method the peer does not have fails with NoSuchMethodError', async () => {
    const port = new FakePort();
    const rpc = new RpcEndpoint(port);
    const call = rpc.call('nope');
    rpc.handlePacket({
      type: T.Response,
      id: port.sent[0]!.id,
      sessionId: 1n,
      data: { error: 'no such rpc: nope' },
    });
    await expect(call).rejects.toBeInstanceOf(NoSuchMethodError);
    // And a request for a method we do not serve gets Go's answer.
    rpc.handlePacket(request(9n, 'missing'));
    expect((port.sent.at(-1) as MessagePacket).data.error).toBe('no such rpc: missing');
  });

  // Issue 14, round 4: the Response echoes the Request's key bytes (as Go does), it does not re-encode a decoded
  // method name; a key that is not UTF-8 shows the difference (re-encoding gives EF BF BD).
  it("a Response carries the Request's key bytes back as they came", () => {
    const port = new FakePort();
    const rpc = new RpcEndpoint(port);
    const key = Buffer.from([0x65, 0xff, 0x63]);
    rpc.register('e\ufffdc', () => 'out');
    rpc.handlePacket({ type: T.Request, id: 5n, sessionId: 1n, data: { key, value: Buffer.from('in') } });
    const res = port.sent.at(-1) as MessagePacket;
    expect(res.type).toBe(T.Response);
    expect(res.data.key).toEqual(key);
    expect(res.data.value?.toString()).toBe('out');
  });

  it('a synchronous handler is answered before handlePacket returns; an async one stays cancellable', async () => {
    const port = new FakePort();
    const rpc = new RpcEndpoint(port);
    rpc.register('sync', (r) => Buffer.concat([r.data, Buffer.from('!')]));
    let aborted: unknown;
    rpc.register(
      'async',
      (r) =>
        new Promise((_resolve, reject) => {
          r.signal.addEventListener('abort', () => {
            aborted = r.signal.reason;
            reject(r.signal.reason);
          });
        }),
    );
    const before = port.sent.length;
    rpc.handlePacket(request(7n, 'sync'));
    expect(port.sent).toHaveLength(before + 1);
    expect((port.sent.at(-1) as MessagePacket).data.value?.toString()).toBe('in!');
    rpc.handlePacket(request(8n, 'async'));
    rpc.handlePacket({ type: T.RequestCancel, id: 8n, sessionId: 1n, cancelType: CancelType.Canceled });
    await vi.advanceTimersByTimeAsync(0);
    expect(aborted).toBeInstanceOf(AbortError);
    expect((port.sent.at(-1) as MessagePacket).data.error).toBe('caller canceled');
  });

  it('a call without a signal times out on the default timeout and leaves no timer behind when answered', async () => {
    const port = new FakePort();
    const rpc = new RpcEndpoint(port);
    const answered = rpc.call('m', 'x');
    expect(vi.getTimerCount()).toBe(1);
    const id = port.sent.at(-1)!.id;
    rpc.handlePacket({ type: T.Response, id, sessionId: 1n, data: { value: Buffer.from('ok') } });
    expect((await answered).data.toString()).toBe('ok');
    expect(vi.getTimerCount()).toBe(0);
    const slow = rpc.call('m', 'x');
    const failed = expect(slow).rejects.toBeInstanceOf(TimeoutError);
    await vi.advanceTimersByTimeAsync(port.limits.callTimeout);
    await failed;
    expect(vi.getTimerCount()).toBe(0);
  });
});
