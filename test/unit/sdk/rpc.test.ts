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
    const port = new FakePort();
    const rpc = new RpcEndpoint(port);
    let signal: AbortSignal | undefined;
    const registered = rpc.register('wait', (req) => {
      signal = req.signal;
      return new Promise(() => {});
    });
    rpc.handlePacket({ type: T.RegisterAck, id: port.sent[0]!.id, sessionId: 1n, data: {} });
    await registered;
    rpc.handlePacket(request(501n, 'wait', Date.now() + 2000));
    await vi.advanceTimersByTimeAsync(1999);
    expect(signal?.aborted).toBe(false);
    await vi.advanceTimersByTimeAsync(1);
    expect(signal?.aborted).toBe(true);
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
});
