/**
 * ChaosProxy against a real loopback echo server. Timing assertions are lower bounds only, so a slow
 * machine cannot make them flaky.
 */
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { ChaosProxy } from '../../../chaos/index.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** An echo server that half-closes back when the client half-closes. */
async function echoServer(): Promise<{ port: number; server: Server }> {
  const sockets = new Set<Socket>();
  const server = createServer({ allowHalfOpen: true }, (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => {});
    s.pipe(s);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  cleanups.push(async () => {
    for (const s of sockets) s.destroy();
    await new Promise<void>((r) => server.close(() => r()));
  });
  const addr = server.address();
  if (addr === null || typeof addr === 'string') throw new Error('no address');
  return { port: addr.port, server };
}

async function setup(faults?: ConstructorParameters<typeof ChaosProxy>[0]['faults']) {
  const echo = await echoServer();
  const proxy = new ChaosProxy({ target: { host: '127.0.0.1', port: echo.port }, faults });
  await proxy.start();
  cleanups.push(() => proxy.close());
  return { proxy, echo };
}

/** A connected client that records everything it receives and how. */
async function client(port: number) {
  const socket = connect({ port, host: '127.0.0.1' });
  cleanups.push(() => {
    socket.destroy();
  });
  const chunks: Buffer[] = [];
  const state = { ended: false, closed: false, error: null as NodeJS.ErrnoException | null };
  socket.on('data', (b: Buffer) => chunks.push(b));
  socket.on('end', () => (state.ended = true));
  socket.on('error', (e) => (state.error = e));
  // Not events.once(): that rejects on 'error', and the reset test expects one.
  const closed = new Promise<void>((resolve) =>
    socket.on('close', () => {
      state.closed = true;
      resolve();
    }),
  );
  await once(socket, 'connect');
  const received = () => Buffer.concat(chunks);
  /** Resolves once at least `n` bytes have arrived. */
  const waitFor = async (n: number) => {
    while (received().length < n) await once(socket, 'data');
    return received();
  };
  return { socket, chunks, state, closed, received, waitFor };
}

/** Sends `data`, half-closes, and resolves with everything echoed back once the echo ends. */
async function roundTrip(port: number, data: Buffer): Promise<{ out: Buffer; chunks: number; ms: number }> {
  const c = await client(port);
  const t0 = performance.now();
  const ended = once(c.socket, 'end');
  c.socket.end(data);
  await ended;
  return { out: c.received(), chunks: c.chunks.length, ms: performance.now() - t0 };
}

describe('ChaosProxy', () => {
  it('passes 4 MiB through unchanged and counts the bytes', async () => {
    const { proxy } = await setup();
    const data = randomBytes(4 * 1024 * 1024);
    const { out } = await roundTrip(proxy.port, data);
    expect(out.length).toBe(data.length);
    expect(sha256(out)).toBe(sha256(data));
    expect(proxy.stats).toMatchObject({ accepted: 1, bytesUp: data.length, bytesDown: data.length });
  });

  it('splits into 1-byte writes that arrive intact as many small reads', async () => {
    const { proxy } = await setup({ splitMaxBytes: { down: 1 } });
    const data = randomBytes(2000);
    const { out, chunks } = await roundTrip(proxy.port, data);
    expect(out.equals(data)).toBe(true);
    // Loopback may still coalesce a few writes, so ask only for "many".
    expect(chunks).toBeGreaterThan(200);
  });

  it('delays each direction by at least delayMs', async () => {
    const delay = 80;
    const { proxy } = await setup({ delayMs: delay });
    const data = Buffer.from('ping');
    const { out, ms } = await roundTrip(proxy.port, data);
    expect(out.equals(data)).toBe(true);
    expect(ms).toBeGreaterThanOrEqual(2 * delay - 1);
  });

  it('throttles to roughly the configured rate', async () => {
    const rate = 200_000;
    const { proxy } = await setup({ throttleBytesPerSec: { down: rate } });
    const data = randomBytes(200_000);
    const { out, ms } = await roundTrip(proxy.port, data);
    expect(sha256(out)).toBe(sha256(data));
    // size / rate is 1 s; the bucket starts with 1/20 s worth, and the bound is kept generous.
    expect(ms).toBeGreaterThanOrEqual(800);
  });

  it('corrupts deterministically with a seed and counts corrupted bytes', async () => {
    const { proxy } = await setup({ corrupt: { up: { probability: 0.01, seed: 7 } } });
    const data = randomBytes(20_000);
    const a = await roundTrip(proxy.port, data);
    const b = await roundTrip(proxy.port, data);
    const differing = [...a.out].filter((byte, i) => byte !== data[i]).length;
    expect(a.out.length).toBe(data.length);
    expect(differing).toBeGreaterThan(50);
    expect(b.out.equals(a.out)).toBe(true);
    expect(proxy.stats.corruptedBytes).toBe(2 * differing);

    proxy.setFaults({ corrupt: { up: { everyNthByte: 1000 } } });
    const c = await roundTrip(proxy.port, data);
    const positions = [...c.out].flatMap((byte, i) => (byte !== data[i] ? [i] : []));
    expect(positions).toEqual(Array.from({ length: 20 }, (_, k) => 1000 * k + 999));
    expect(proxy.stats.corruptedBytes).toBe(2 * differing + 20);
  });

  it('blackholes data but keeps the connection open until turned off', async () => {
    const { proxy } = await setup({ blackhole: true });
    const c = await client(proxy.port);
    c.socket.write('lost');
    await sleep(300);
    expect(c.received().length).toBe(0);
    expect(c.state.closed).toBe(false);
    expect(proxy.connections).toBe(1);

    proxy.setFaults({ blackhole: false });
    c.socket.write('found');
    expect((await c.waitFor(5)).toString()).toBe('found');
    expect(proxy.stats.droppedBytes).toBe(4);
  });

  it('refuse closes new connections at once', async () => {
    const { proxy } = await setup({ refuse: true });
    const c = await client(proxy.port);
    await c.closed;
    expect(proxy.stats).toMatchObject({ accepted: 0, refused: 1 });
    expect(proxy.connections).toBe(0);
  });

  it('destroys the client when the target refuses the connection', async () => {
    const gone = createServer();
    gone.listen(0, '127.0.0.1');
    await once(gone, 'listening');
    const addr = gone.address();
    if (addr === null || typeof addr === 'string') throw new Error('no address');
    await new Promise<void>((r) => gone.close(() => r()));
    const proxy = new ChaosProxy({ target: { host: '127.0.0.1', port: addr.port } });
    await proxy.start();
    cleanups.push(() => proxy.close());
    const c = await client(proxy.port);
    await c.closed;
    while (proxy.connections > 0) await once(proxy, 'connectionClose');
  });

  it('killAll ends connections with a FIN', async () => {
    const { proxy } = await setup();
    const c = await client(proxy.port);
    c.socket.write('x');
    await c.waitFor(1);
    expect(proxy.killAll()).toBe(1);
    await c.closed;
    expect(c.state.ended).toBe(true);
    expect(c.state.error).toBeNull();
    if (proxy.connections > 0) await once(proxy, 'connectionClose');
    expect(proxy.stats.killed).toBe(1);
  });

  it('resetAll makes the client see ECONNRESET', async () => {
    const { proxy } = await setup();
    const c = await client(proxy.port);
    c.socket.write('x');
    await c.waitFor(1);
    expect(proxy.resetAll()).toBe(1);
    await c.closed;
    expect(c.state.error?.code).toBe('ECONNRESET');
    expect(proxy.stats.reset).toBe(1);
  });

  it('close() destroys every connection and leaves no handles or timers behind', async () => {
    const count = () => {
      const counts = new Map<string, number>();
      for (const r of process.getActiveResourcesInfo()) counts.set(r, (counts.get(r) ?? 0) + 1);
      return counts;
    };
    const before = count();
    const { proxy, echo } = await setup({ delayMs: 10_000, throttleBytesPerSec: 1 });
    const clients = await Promise.all([1, 2, 3].map(() => client(proxy.port)));
    for (const c of clients) c.socket.write('pending behind a long delay');
    while (proxy.connections < 3) await once(proxy, 'connection');
    await sleep(20);
    await proxy.close();
    await proxy.close();
    expect(proxy.connections).toBe(0);
    for (const c of clients) await c.closed;
    await new Promise<void>((r) => echo.server.close(() => r()));
    const after = count();
    for (const kind of ['TCPSocketWrap', 'TCPServerWrap', 'Timeout', 'Immediate']) {
      expect(after.get(kind) ?? 0, kind).toBeLessThanOrEqual(before.get(kind) ?? 0);
    }
  });

  it('rejects invalid faults without changing the current ones', () => {
    const proxy = new ChaosProxy({ target: { host: '127.0.0.1', port: 1 }, faults: { delayMs: 5 } });
    expect(() => proxy.setFaults({ delayMs: -1 })).toThrow(RangeError);
    expect(() => proxy.setFaults({ corrupt: { probability: 2 } })).toThrow(/probability/);
    expect(proxy.faults.delayMs).toBe(5);
    proxy.setFaults({ delayMs: { down: 7 } });
    expect(proxy.faults.delayMs).toEqual({ up: 5, down: 7 });
  });
});

describe('chaos CLI', () => {
  it('exits 2 and names the flag for a bad value', async () => {
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', 'chaos/cli.ts', '--target', '127.0.0.1:1', '--delay', 'soon'],
      { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
    const [code] = (await once(child, 'exit')) as [number | null];
    expect(code).toBe(2);
    expect(stderr).toContain('--delay');
    expect(stderr).toContain('soon');
  });
});
