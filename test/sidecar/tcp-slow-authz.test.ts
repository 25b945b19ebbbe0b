/**
 * Half-close through two sidecars while a stream-authorization plugin takes 300 ms: the TCP client writes and
 * shuts down its write side at once, so the outbound sidecar's Dismiss reaches the inbound one before the plugin
 * has decided. The inbound sidecar accepts streams for TCP services half-open from their first frame, so that
 * Dismiss is the client's half-close and the answer still comes back. (Before, the stream's writable side was
 * ended at the Dismiss and the answer was lost.)
 */
import { createHash } from 'node:crypto';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig, withConfigDir } from '../../sidecar/config/load.js';
import { Sidecar } from '../../sidecar/main.js';
import { tempDir, writePlugin } from '../plugins/helpers.js';
import { quiet } from './helpers.js';

/** Reads to EOF, then answers with the length and SHA-256 of what it read. */
async function startHashAfterEof(): Promise<{ port: number; close: () => void }> {
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    const h = createHash('sha256');
    let n = 0;
    s.on('data', (c: Buffer) => {
      h.update(c);
      n += c.length;
    });
    s.on('end', () => s.end(`${n} ${h.digest('hex')}`));
    s.on('error', () => {});
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { port: (server.address() as net.AddressInfo).port, close: () => server.close() };
}

/** Writes `payload`, shuts down the write side at once, and reads the answer to EOF. */
function writeAndShutdown(port: number, payload: Buffer): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true }, () => s.end(payload));
    const chunks: Buffer[] = [];
    s.on('data', (c: Buffer) => chunks.push(c));
    s.on('error', reject);
    s.on('end', () => {
      s.destroy();
      resolve(Buffer.concat(chunks).toString());
    });
  });
}

let hasher: Awaited<ReturnType<typeof startHashAfterEof>>;
let inbound: Sidecar;
let outbound: Sidecar;
let tcpPort: number;

beforeAll(async () => {
  hasher = await startHashAfterEof();
  const dir = tempDir();
  writePlugin(
    dir,
    'slow.ts',
    `export default definePlugin({
  name: 'slow',
  hooks: { onStream: () => new Promise((r) => setTimeout(() => r(allow()), 300)) },
});`,
  );
  inbound = new Sidecar(
    withConfigDir(
      parseConfig({
        name: 'inbound',
        log: { level: 'silent' },
        admin: { listen: '127.0.0.1:0' },
        inbound: { listen: '127.0.0.1:0' },
        services: { hash: { target: `tcp://127.0.0.1:${hasher.port}` } },
        plugins: [{ path: './slow.ts', timeoutMs: 5_000 }],
      }),
      dir,
    ),
    { logger: quiet() },
  );
  await inbound.start();
  outbound = new Sidecar(
    parseConfig({
      name: 'outbound',
      log: { level: 'silent' },
      admin: { listen: '127.0.0.1:0' },
      upstreams: { up: { address: `127.0.0.1:${inbound.inbound!.address()!.port}` } },
      outbound: { tcp: [{ name: 'tcp', listen: '127.0.0.1:0', upstream: 'up', service: 'hash' }] },
    }),
    { logger: quiet() },
  );
  await outbound.start();
  await outbound.upstreams.get('up')!.waitConnected();
  tcpPort = outbound.listeners.get('tcp')!.listener!.address().port;
});
afterAll(async () => {
  outbound?.destroy();
  inbound?.destroy();
  hasher?.close();
});

describe('TCP half-close through two sidecars with a 300 ms stream plugin', () => {
  it('write, shut down at once: the answer arrives 100 of 100 times', async () => {
    const runs = 100;
    const answers = await Promise.all(
      Array.from({ length: runs }, (_, i) => {
        const payload = Buffer.alloc(100 + i, i);
        const want = `${payload.length} ${createHash('sha256').update(payload).digest('hex')}`;
        return writeAndShutdown(tcpPort, payload).then(
          (got) => got === want,
          () => false,
        );
      }),
    );
    expect(answers.filter(Boolean).length).toBe(runs);
  }, 60_000);
});
