/** The decoder's parts mode: Stream payloads arrive as views of the input chunks, never copied, bytes intact. */
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { encodePacket, FrameDecoder, type Packet, PacketType as T } from '../../../sdk/frame/index.js';

function splitAt(buf: Buffer, sizes: number[]): Buffer[] {
  const out: Buffer[] = [];
  let off = 0;
  for (let i = 0; off < buf.length; i++) {
    const n = sizes[i % sizes.length]!;
    // Each chunk gets its own memory, as socket reads do.
    out.push(Buffer.from(buf.subarray(off, off + n)));
    off += n;
  }
  return out;
}

describe('FrameDecoder streamParts', () => {
  const payloadA = randomBytes(200_000);
  const payloadB = randomBytes(70_000);
  const wire = Buffer.concat([
    encodePacket({ type: T.Stream, id: 1n, sessionId: 5n, payload: payloadA }),
    encodePacket({ type: T.Heartbeat, id: 2n }),
    encodePacket({ type: T.Stream, id: 3n, sessionId: 6n, payload: payloadB }),
    encodePacket({ type: T.Stream, id: 4n, sessionId: 6n, payload: Buffer.alloc(0) }),
  ]);

  for (const sizes of [[1], [7, 13], [65_536], [1000, 64_000, 3], [wire.length]]) {
    it(`reassembles every payload from chunks of ${sizes.join('/')} bytes, without copying`, () => {
      const chunks = splitAt(wire, sizes);
      const owners = new Set(chunks.map((c) => c.buffer));
      const got = new Map<bigint, Buffer[]>();
      const others: Packet[] = [];
      const decoder = new FrameDecoder({ streamParts: true });
      for (const c of chunks) {
        decoder.push(c, (p) => {
          if (p.type !== T.Stream) return others.push(p);
          if (p.payload.length > 0) expect(owners.has(p.payload.buffer)).toBe(true);
          const parts = got.get(p.sessionId) ?? [];
          parts.push(p.payload);
          got.set(p.sessionId, parts);
        });
      }
      expect(Buffer.concat(got.get(5n)!).equals(payloadA)).toBe(true);
      expect(Buffer.concat(got.get(6n)!).equals(payloadB)).toBe(true);
      expect(others.map((p) => p.type)).toEqual([T.Heartbeat]);
      expect(decoder.bufferedBytes).toBe(0);
    });
  }

  it('still checks the header of a Stream packet before delivering any of it', () => {
    const head = Buffer.alloc(14);
    head[0] = 1;
    head[1] = T.Stream;
    head.writeUInt32BE(0xffff_ffff, 10);
    expect(() => new FrameDecoder({ streamParts: true }).push(head, () => {})).toThrow(/limit/);
  });
});
