/** The liveness check alone, on a fake clock: when it calls the peer dead, and that it reads pending I/O first. */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { Liveness } from '../../../sdk/connection/liveness.js';

afterEach(() => vi.useRealTimers());

describe('Liveness', () => {
  it('calls the peer dead once nothing arrived for the timeout, not before', async () => {
    vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval', 'setImmediate', 'clearImmediate', 'Date'] });
    let dead = 0;
    const l = new Liveness(() => dead++);
    l.start(300);
    await vi.advanceTimersByTimeAsync(299);
    expect(dead).toBe(0);
    await vi.advanceTimersByTimeAsync(1); // the check at 300 finds the timeout passed ...
    expect(dead).toBe(0);
    await vi.advanceTimersByTimeAsync(1); // ... and gives its verdict on the next turn, after pending reads
    expect(dead).toBe(1);
    await vi.advanceTimersByTimeAsync(3000);
    expect(dead).toBe(1); // once, and the timer is gone
    expect(vi.getTimerCount()).toBe(0);
  });

  it('any packet pushes the deadline: the timeout counts from the check that saw it', async () => {
    vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval', 'setImmediate', 'clearImmediate', 'Date'] });
    let dead = 0;
    const l = new Liveness(() => dead++);
    l.start(300); // checks every 75 ms
    await vi.advanceTimersByTimeAsync(200);
    l.saw(); // seen by the check at 225
    await vi.advanceTimersByTimeAsync(324); // 524
    expect(dead).toBe(0);
    await vi.advanceTimersByTimeAsync(2); // 525 = 225 + 300, and the verdict's turn
    expect(dead).toBe(1);
    l.stop();
  });

  it('an overdue check waits for the pending reads: a packet read then keeps the peer alive', async () => {
    // Only the interval and the clock are fake: the verdict waits for a real setImmediate, which runs after the
    // poll phase that reads sockets. saw() between the two is what that poll phase does with a pending packet.
    vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval', 'Date'] });
    let dead = 0;
    const l = new Liveness(() => dead++);
    l.start(300);
    vi.advanceTimersByTime(600); // the process stalled: the overdue check runs now
    expect(dead).toBe(0);
    l.saw();
    await new Promise((r) => setImmediate(r));
    expect(dead).toBe(0);
    // And without a packet, the next overdue check's verdict is dead.
    vi.advanceTimersByTime(300);
    await new Promise((r) => setImmediate(r));
    expect(dead).toBe(1);
    l.stop();
  });

  it('time this process was stalled does not count against the peer: a late check moves the deadline', async () => {
    vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval', 'setImmediate', 'clearImmediate', 'Date'] });
    let dead = 0;
    const l = new Liveness(() => dead++);
    l.start(300); // checks every 75 ms
    await vi.advanceTimersByTimeAsync(150);
    // A 10 s stall: the wall clock moves on, no timer runs (nor would any socket be read).
    vi.setSystemTime(Date.now() + 10_000);
    await vi.advanceTimersByTimeAsync(75); // the check at 225 runs 10 s late
    expect(dead).toBe(0);
    // The peer keeps what was left of its timeout: 300 ms of running time, at tick 300 (plus the verdict's turn).
    await vi.advanceTimersByTimeAsync(74);
    expect(dead).toBe(0);
    await vi.advanceTimersByTimeAsync(2);
    expect(dead).toBe(1);
  });

  it('stop() cancels a verdict already scheduled', async () => {
    vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval', 'Date'] });
    let dead = 0;
    const l = new Liveness(() => dead++);
    l.start(300);
    vi.advanceTimersByTime(300);
    l.stop();
    await new Promise((r) => setImmediate(r));
    expect(dead).toBe(0);
  });
});
