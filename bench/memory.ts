/**
 * Memory per idle connection and per idle open stream. Run with --expose-gc (bench/run.ts does):
 *
 *   node --expose-gc --import tsx bench/memory.ts '{"connections":200,"streams":1000}'
 *
 * The client side lives in this process, the server side in bench/server.ts (another process, also with
 * --expose-gc), so each side is measured on its own: deltas of heapUsed and RSS after forced GCs, before and
 * after opening N connections (one End each) or N streams on one connection, divided by N.
 */
import { dial, type End, type Stream } from '../sdk/index.js';
import { emit, type JsonChild, sleep, startNodeServer } from './lib.js';

const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) {
  console.error('run with node --expose-gc');
  process.exit(2);
}

async function settle(): Promise<{ heapUsed: number; rss: number; external: number }> {
  await sleep(200);
  for (let i = 0; i < 4; i++) gc!();
  const m = process.memoryUsage();
  return { heapUsed: m.heapUsed, rss: m.rss, external: m.external };
}

async function serverMem(server: JsonChild) {
  server.send('mem');
  return (await server.next()) as { heapUsed: number; rss: number; external: number };
}

async function waitFor(server: JsonChild, pred: (c: { ends: number; openStreams: number }) => boolean) {
  for (let i = 0; i < 600; i++) {
    server.send('count');
    if (pred(await server.next())) return;
    await sleep(50);
  }
  throw new Error('server never caught up');
}

function per(before: { heapUsed: number; rss: number }, after: { heapUsed: number; rss: number }, n: number) {
  return { heap: (after.heapUsed - before.heapUsed) / n, rss: (after.rss - before.rss) / n };
}

const { connections = 200, streams = 1000 } = JSON.parse(process.argv[2] ?? '{}') as {
  connections?: number;
  streams?: number;
};
const { server, host, port } = await startNodeServer('geminio', ['--expose-gc']);
try {
  // Warm up the code paths (one connection, a few streams) so JIT and lazily loaded modules are not counted.
  const warm = await dial({ host, port });
  for (let i = 0; i < 8; i++) {
    const s = await warm.openStream();
    s.end();
  }
  await warm.close();
  await waitFor(server, (c) => c.ends === 0);

  // Idle connections.
  const c0 = await settle();
  const s0 = await serverMem(server);
  const ends: End[] = [];
  for (let i = 0; i < connections; i++) ends.push(await dial({ host, port }));
  await waitFor(server, (c) => c.ends === connections);
  const c1 = await settle();
  const s1 = await serverMem(server);
  const conn = { client: per(c0, c1, connections), server: per(s0, s1, connections) };
  await Promise.all(ends.map((e) => e.close()));
  ends.length = 0;
  await waitFor(server, (c) => c.ends === 0);

  // Idle streams on one connection.
  const end = await dial({ host, port });
  await waitFor(server, (c) => c.ends === 1);
  const c2 = await settle();
  const s2 = await serverMem(server);
  const open: Stream[] = [];
  for (let i = 0; i < streams; i++) open.push(await end.openStream());
  await waitFor(server, (c) => c.openStreams === streams);
  const c3 = await settle();
  const s3 = await serverMem(server);
  const stream = { opener: per(c2, c3, streams), acceptor: per(s2, s3, streams) };
  if (open.length !== streams) throw new Error('lost streams');
  end.destroy();
  emit({ connections, streams, connection: conn, stream });
} finally {
  await server.stop();
}
process.exit(0);
