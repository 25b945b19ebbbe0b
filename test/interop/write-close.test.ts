/**
 * A Go peer that writes and closes at once: Go v1.1.8 queues a stream write but sends the Dismiss directly, so the
 * Dismiss can reach us before the data. Every payload must still arrive whole, on streams Go opens and streams
 * we open, half-open or not, and on the default stream. (Before the fix, most payloads were lost.)
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dial, type End, type Stream } from '../../sdk/index.js';
import { readAll } from '../helpers/pair.js';
import { GoPeer, goAvailable } from './go-peer.js';

const STREAMS = 200;
const BYTES = 1000;

/** True when `data` is the Go peer's pattern payload for `seed` (patternBytes in commands.go), whole. */
function whole(data: Buffer, seed: number): boolean {
  return data.length === BYTES && data.every((b) => b === seed % 251);
}

/** Reads a stream to its end; a stream that errors counts as cut. */
async function readStream(s: Stream): Promise<Buffer> {
  try {
    return await readAll(s);
  } catch {
    return Buffer.alloc(0);
  }
}

describe.skipIf(!goAvailable && !process.env.CI)('a Go peer that writes and closes at once', () => {
  let go: GoPeer;
  beforeAll(async () => {
    go = await GoPeer.server(['-buffer', '1024']);
  });
  afterAll(async () => {
    await go.stop();
  });

  async function connect(options: Parameters<typeof dial>[1] = {}): Promise<End> {
    const end = await dial(go.addr, options);
    await go.waitFor('ready', (e) => e.clientId === String(end.clientId));
    return end;
  }

  it.each([
    ['default (answer the Dismiss at once)', undefined],
    ['allowHalfOpen, chosen at accept', true],
  ])(
    'streams Go opens (%s): every payload whole',
    async (_name, halfOpen) => {
      const end = await connect(halfOpen ? { acceptHalfOpen: true } : {});
      try {
        const reads: Array<Promise<boolean>> = [];
        const done = go.request(`burst ${STREAMS} ${BYTES}`, 'burst-done', undefined, 60_000);
        for (let i = 0; i < STREAMS; i++) {
          const s = await end.acceptStream();
          const seed = Number(s.meta.toString().split(':')[1]);
          if (halfOpen) {
            expect(s.allowHalfOpen).toBe(true);
            // A half-open stream answers only after it has read everything: an echo of the count.
            reads.push(
              readStream(s).then((data) => {
                s.end(String(data.length));
                return whole(data, seed);
              }),
            );
          } else reads.push(readStream(s).then((data) => whole(data, seed)));
        }
        expect((await done).opened).toBe(STREAMS);
        const results = await Promise.all(reads);
        expect(results.filter(Boolean).length).toBe(STREAMS);
      } finally {
        end.destroy();
      }
    },
    120_000,
  );

  it.each([
    ['default', false],
    ['allowHalfOpen', true],
  ])(
    'streams we open (%s): every payload whole',
    async (_name, allowHalfOpen) => {
      const end = await connect();
      try {
        const reads: Array<Promise<boolean>> = [];
        for (let i = 0; i < STREAMS; i++) {
          const s = await end.openStream({ meta: `write-close:${i}:${BYTES}`, allowHalfOpen });
          reads.push(
            readStream(s).then((data) => {
              if (allowHalfOpen) s.end();
              return whole(data, i);
            }),
          );
        }
        const results = await Promise.all(reads);
        expect(results.filter(Boolean).length).toBe(STREAMS);
      } finally {
        end.destroy();
      }
    },
    120_000,
  );

  it('the default stream: bytes written right before End.Close() arrive whole', async () => {
    const runs = 20;
    let whole1 = 0;
    for (let i = 0; i < runs; i++) {
      const end = await connect();
      // The End iterates streams; its own bytes come as 'data' events, up to its 'end' or 'close'.
      const data = new Promise<Buffer>((resolve) => {
        const chunks: Buffer[] = [];
        end.on('data', (c: Buffer) => chunks.push(c));
        end.on('error', () => {});
        end.once('end', () => resolve(Buffer.concat(chunks)));
        end.once('close', () => resolve(Buffer.concat(chunks)));
      });
      go.send(`write-close-default ${BYTES}`);
      const got = await data;
      if (got.length === BYTES && got.every((b) => b === 1)) whole1++;
      end.destroy();
    }
    expect(whole1).toBe(runs);
  }, 120_000);
});
