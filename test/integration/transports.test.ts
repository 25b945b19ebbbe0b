/**
 * The same small suite over every transport an End runs on: TCP (listen/dial), TLS (a self-signed certificate
 * made with openssl for the test) and an in-memory Duplex pair (clientEnd/serverEnd).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { clientEnd, dial, type End, type Listener, listen, serverEnd } from '../../sdk/index.js';
import { duplexPair, randomBytes, readExactly, sha256 } from '../helpers/pair.js';
import { hasOpenssl, selfSigned } from '../helpers/tls.js';

interface Pair {
  client: End;
  server: End;
  cleanup: () => Promise<void>;
}

const certificate = selfSigned;

/**
 * Longer than any test here may take: a close exchange that sat until closeTimeout dropped the transport would
 * hang its test past the 30 s test timeout and fail it, whatever the machine's speed, where a wall-clock bound
 * would be a speed test.
 */
const NEVER = { closeTimeout: 600_000 };

async function listenerPair(listener: Listener, dialOptions: Parameters<typeof dial>[1]): Promise<Pair> {
  try {
    const [client, server] = await Promise.all([dial(listener.address(), dialOptions), listener.acceptEnd()]);
    return {
      client,
      server,
      cleanup: async () => {
        client.destroy();
        server.destroy();
        await listener.close();
      },
    };
  } catch (err) {
    await listener.close();
    throw err;
  }
}

const transports: Array<{ name: string; enabled: boolean; make: () => Promise<Pair> }> = [
  {
    name: 'TCP',
    enabled: true,
    make: async () => listenerPair(await listen('127.0.0.1:0', NEVER), NEVER),
  },
  {
    // Node cannot make certificates itself; without openssl on the PATH there is no certificate to test with.
    name: 'TLS',
    enabled: hasOpenssl,
    make: async () => {
      const { key, cert } = certificate();
      const listener = await listen('127.0.0.1:0', { ...NEVER, tls: { key, cert } });
      return listenerPair(listener, { ...NEVER, tls: { ca: cert, servername: 'localhost' } });
    },
  },
  {
    name: 'in-memory Duplex pair',
    enabled: true,
    make: async () => {
      const [a, b] = duplexPair();
      const [client, server] = await Promise.all([clientEnd(a, NEVER), serverEnd(b, NEVER)]);
      return {
        client,
        server,
        cleanup: async () => {
          client.destroy();
          server.destroy();
          a.destroy();
          b.destroy();
        },
      };
    },
  },
];

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0)) await c();
});

async function pair(make: () => Promise<Pair>): Promise<Pair> {
  const p = await make();
  cleanups.push(p.cleanup);
  return p;
}

function closedWith(end: End): Promise<unknown> {
  return new Promise((resolve) => end.once('close', () => resolve(end.closeError)));
}

const MiB = 1024 * 1024;

for (const transport of transports) {
  describe(`over ${transport.name}`, () => {
    it.skipIf(!transport.enabled)('handshakes: both sides agree on a non-zero ClientID', async () => {
      const { client, server } = await pair(transport.make);
      expect(client.clientId).toBeGreaterThan(0n);
      expect(server.clientId).toBe(client.clientId);
      expect(client.role).toBe('client');
      expect(server.role).toBe('server');
    });

    it.skipIf(!transport.enabled)('one stream carries 1 MiB intact both ways at once', async () => {
      const { client, server } = await pair(transport.make);
      const [a, b] = await Promise.all([client.openStream({ meta: 'bulk' }), server.acceptStream()]);
      expect(b.meta.toString()).toBe('bulk');
      expect(a.streamId).toBe(b.streamId);
      const up = randomBytes(MiB);
      const down = randomBytes(MiB);
      const gotUp = readExactly(b, MiB);
      const gotDown = readExactly(a, MiB);
      a.write(up);
      b.write(down);
      const [u, d] = await Promise.all([gotUp, gotDown]);
      expect(u.length).toBe(MiB);
      expect(d.length).toBe(MiB);
      expect(sha256(u)).toBe(sha256(up));
      expect(sha256(d)).toBe(sha256(down));
      // Then close the stream cleanly from one side.
      const bClosed = new Promise((r) => b.once('close', r));
      a.resume();
      b.resume();
      a.end();
      await bClosed;
      expect(b.errored).toBeNull();
    });

    it.skipIf(!transport.enabled)('an RPC call both ways', async () => {
      const { client, server } = await pair(transport.make);
      await server.register('upper', ({ data }) => data.toString().toUpperCase());
      await client.register('whoami', ({ clientId }) => String(clientId));
      expect((await client.call('upper', 'hello')).data.toString()).toBe('HELLO');
      expect((await server.call('whoami')).data.toString()).toBe(String(client.clientId));
    });

    it.skipIf(!transport.enabled)(
      'client close(): the server End emits close with closeError undefined',
      async () => {
        const { client, server } = await pair(transport.make);
        const serverClosed = closedWith(server);
        // The exchange is a few frames: it must not sit until closeTimeout drops the transport (see NEVER).
        await client.close();
        expect(await serverClosed).toBeUndefined();
        expect(client.closeError).toBeUndefined();
        expect(server.errored).toBeNull();
      },
    );

    it.skipIf(!transport.enabled)(
      'server close(): the client End emits close with closeError undefined',
      async () => {
        const { client, server } = await pair(transport.make);
        const clientClosed = closedWith(client);
        await server.close();
        expect(await clientClosed).toBeUndefined();
        expect(server.closeError).toBeUndefined();
        expect(client.errored).toBeNull();
      },
    );
  });
}
