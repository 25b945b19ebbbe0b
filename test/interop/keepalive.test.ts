/**
 * Heartbeats with the real Go library: a connection stays up past two heartbeat intervals in each direction.
 * Slow by nature (the Go client's interval is fixed at 20 s), so both directions run at once in one test.
 */
import { describe, expect, it } from 'vitest';
import { dial, listen } from '../../sdk/index.js';
import { delay } from '../helpers/pair.js';
import { eventually } from '../helpers/wait.js';
import { GoPeer, goAvailable } from './go-peer.js';

// Without a Go toolchain the suite cannot run; outside CI that skips it, in CI it must run.
describe.skipIf(!goAvailable && !process.env.CI)('keep-alive with the Go library', () => {
  it('both directions stay connected past two heartbeat intervals', { timeout: 90_000 }, async () => {
    // Node client -> Go server: we declare 5 s (code 0), so the Go server drops us after 10 s without one.
    const goServer = await GoPeer.server();
    const nodeClient = await dial(goServer.addr, { heartbeatInterval: 5_000 });
    // Go client -> Node server: the Go client always sends every 20 s; our server times out after 40 s.
    const listener = await listen('127.0.0.1:0');
    const { host, port } = listener.address();
    const goClient = await GoPeer.client(`${host}:${port}`);
    const nodeServer = await listener.acceptEnd();
    try {
      await Promise.all([goServer.waitFor('ready'), goClient.waitFor('ready')]);
      await delay(42_000);
      expect(nodeClient.state).toBe('connected');
      expect(nodeServer.destroyed).toBe(false);
      // Heartbeats went through both ways (the Go server reports each one it gets). Eight at 5 s are 40 s of
      // them; waited for, not counted within the 42 s, since late timers on a loaded machine add up.
      await eventually(
        () => goServer.all('heartbeat').length >= 8,
        20_000,
        'eight heartbeats at the Go server',
      );
      expect((await nodeClient.call('echo', 'still here')).data.toString()).toBe('still here');
      expect((await nodeServer.call('echo', 'me too')).data.toString()).toBe('me too');
      expect(goServer.all('end-closed')).toHaveLength(0);
      expect(goClient.all('end-closed')).toHaveLength(0);
    } finally {
      nodeClient.destroy();
      nodeServer.destroy();
      await Promise.all([goServer.stop(), goClient.stop()]);
      await listener.close();
    }
  });
});
