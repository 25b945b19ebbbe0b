/**
 * Properties of the frame codec, checked with fast-check:
 *  - encode -> decode (in random chunks) gives back the packet, for arbitrary packets of every type;
 *  - arbitrary bytes never make the decoder throw anything but a typed GeminioError, and it never buffers more
 *    than one maximal packet plus a header.
 * The run counts add up to more than 100,000 per run (see RUNS), sized to finish well within a minute on two cores.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { FrameTooLargeError, GeminioError, ProtocolError } from '../../../sdk/errors.js';
import {
  encodePacket,
  FrameDecoder,
  fixedBodyLength,
  HEADER_LENGTH,
  type MessageData,
  type Packet,
  PacketType as T,
  UINT64_MAX,
} from '../../../sdk/frame/index.js';

/** Runs per property; the sum is asserted below to stay at or above 100,000. */
const RUNS = {
  connection: 10_000,
  session: 10_000,
  message: 10_000,
  raw: 10_000,
  sequence: 10_000,
  randomBytes: 60_000,
} as const;

/** Go's zero time in ms; deadlines at or before it decode as unset. */
const GO_ZERO_MS = Date.parse('0001-01-01T00:00:00Z');
const YEAR_9999_END = Date.UTC(9999, 11, 31, 23, 59, 59, 999);

// ---- arbitraries ----

const u64 = fc.bigInt({ min: 0n, max: UINT64_MAX });
const byte = fc.integer({ min: 0, max: 255 });
const bytes = fc.uint8Array({ maxLength: 48 }).map((a) => Buffer.from(a));
const optBytes = fc.option(bytes, { nil: undefined });
const tricky = fc.constantFrom(
  '<',
  '>',
  '&',
  '"',
  '\\',
  '/',
  '\n',
  '\u0000',
  '\u001f',
  '\u007f',
  '\u2028',
  '\u2029',
  'é',
  '漢',
  '😀',
  '\ud800',
  'a',
  ' ',
);
const text = fc.oneof(
  fc.string({ unit: tricky, maxLength: 16 }),
  fc.string({ unit: 'binary', maxLength: 16 }),
  fc.string({ maxLength: 16 }),
);
const optText = fc.option(text, { nil: undefined });
const deadline = fc.option(fc.integer({ min: GO_ZERO_MS + 1, max: YEAR_9999_END }), { nil: undefined });
const timeout = fc.option(fc.maxSafeInteger(), { nil: undefined });

const connData = fc.record({ meta: optBytes, error: optText });
const sessionData = fc.record({ meta: optBytes, error: optText, peer: optText });
const messageData: fc.Arbitrary<MessageData> = fc.record({
  key: optBytes,
  value: optBytes,
  topic: optText,
  custom: optBytes,
  error: optText,
  timeout,
  deadline,
  contextDeadline: deadline,
});

const connPacket: fc.Arbitrary<Packet> = fc.oneof(
  fc.record({ type: fc.constant(T.Conn), id: u64, flags: byte, clientId: u64, data: connData }),
  fc.record({ type: fc.constant(T.ConnAck), id: u64, retCode: byte, clientId: u64, data: connData }),
  fc.record({ type: fc.constant(T.DisConnAck), id: u64, retCode: byte, data: connData }),
  fc.record({ type: fc.constantFrom(T.DisConn, T.Heartbeat, T.HeartbeatAck), id: u64 }),
);
const sessionPacket: fc.Arbitrary<Packet> = fc.oneof(
  fc.record({
    type: fc.constant(T.Session),
    id: u64,
    priority: byte,
    flags: byte,
    negotiateId: u64,
    data: sessionData,
  }),
  fc.record({
    type: fc.constant(T.SessionAck),
    id: u64,
    negotiateId: u64,
    sessionId: u64,
    data: sessionData,
  }),
  fc.record({ type: fc.constantFrom(T.Dismiss, T.DismissAck), id: u64, sessionId: u64, data: sessionData }),
);
const messagePacket: fc.Arbitrary<Packet> = fc.record({
  type: fc.constantFrom(T.Message, T.MessageAck, T.Request, T.Response),
  id: u64,
  sessionId: u64,
  data: messageData,
});
const rawPacket: fc.Arbitrary<Packet> = fc.oneof(
  fc
    .record({
      type: fc.constant(T.Stream),
      id: u64,
      sessionId: u64,
      payload: fc.uint8Array({ maxLength: 300 }),
    })
    .map((p) => ({ ...p, payload: Buffer.from(p.payload) })),
  fc.record({ type: fc.constant(T.Register), id: u64, sessionId: u64, method: bytes }),
  fc.record({
    type: fc.constant(T.RegisterAck),
    id: u64,
    sessionId: u64,
    data: fc.record({ error: optText }),
  }),
  fc.record({
    type: fc.constant(T.RequestCancel),
    id: u64,
    sessionId: u64,
    cancelType: fc.integer({ min: 0, max: 0xffff }),
  }),
  fc.record({
    type: fc.constant(T.WindowUpdate),
    id: u64,
    sessionId: u64,
    increment: fc.integer({ min: 0, max: 0xffff_ffff }),
  }),
);
const anyPacket = fc.oneof(connPacket, sessionPacket, messagePacket, rawPacket);

/** Chunk sizes to cut an encoding into (the rest goes in one last chunk). */
const chunking = fc.array(fc.integer({ min: 0, max: 64 }), { maxLength: 24 });

// ---- helpers ----

function split(buf: Buffer, sizes: number[]): Buffer[] {
  const out: Buffer[] = [];
  let off = 0;
  for (const size of sizes) {
    if (off >= buf.length) break;
    out.push(buf.subarray(off, off + size));
    off += size;
  }
  if (off < buf.length) out.push(buf.subarray(off));
  return out;
}

/**
 * Comparable form of a packet: Buffers as hex, undefined dropped. With `asDecoded`, also the values the wire cannot
 * tell from "unset" (empty strings and buffers in JSON parts, a zero timeout) are dropped.
 */
function norm(value: unknown, asDecoded: boolean, inData = false): unknown {
  if (Buffer.isBuffer(value)) return `hex:${value.toString('hex')}`;
  if (Array.isArray(value)) return value.map((v) => norm(v, asDecoded, inData));
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) {
      if (v === undefined) continue;
      if (asDecoded && inData) {
        if (v === '' || (Buffer.isBuffer(v) && v.length === 0)) continue;
        if (k === 'timeout' && v === 0) continue;
      }
      out[k] = norm(v, asDecoded, inData || k === 'data');
    }
    return out;
  }
  return value;
}

function decodeChunks(chunks: Buffer[]): Packet[] {
  const decoder = new FrameDecoder();
  const out: Packet[] = [];
  for (const c of chunks) decoder.push(c, (p) => out.push(p));
  expect(decoder.bufferedBytes).toBe(0);
  return out;
}

function roundTrip(packets: Packet[], sizes: number[]): void {
  const bytes = Buffer.concat(packets.map(encodePacket));
  const out = decodeChunks(split(bytes, sizes));
  expect(norm(out, false)).toEqual(norm(packets, true));
}

// ---- properties ----

describe('frame codec properties', () => {
  it('runs at least 100,000 cases in all', () => {
    expect(Object.values(RUNS).reduce((a, n) => a + n, 0)).toBeGreaterThanOrEqual(100_000);
  });

  const groups: Array<[string, fc.Arbitrary<Packet>, number]> = [
    ['Conn, ConnAck, DisConn, DisConnAck, Heartbeat, HeartbeatAck', connPacket, RUNS.connection],
    ['Session, SessionAck, Dismiss, DismissAck', sessionPacket, RUNS.session],
    ['Message, MessageAck, Request, Response', messagePacket, RUNS.message],
    ['Stream, Register, RegisterAck, RequestCancel, WindowUpdate', rawPacket, RUNS.raw],
  ];
  for (const [name, arb, numRuns] of groups) {
    it(`round trip, random chunks: ${name}`, () => {
      fc.assert(
        fc.property(arb, chunking, (packet, sizes) => roundTrip([packet], sizes)),
        { numRuns },
      );
    });
  }

  it('round trip of sequences of mixed packets, random chunks', () => {
    fc.assert(fc.property(fc.array(anyPacket, { minLength: 1, maxLength: 6 }), chunking, roundTrip), {
      numRuns: RUNS.sequence,
    });
  });

  // Inputs that reach past the header checks: real headers with random lengths and bodies (JSON or not), valid
  // packets followed by garbage, and plain random bytes.
  const knownTypes = Object.keys(fixedBodyLength).map(Number);
  const jsonish = fc.oneof(
    fc.json({ maxDepth: 2 }),
    fc.constantFrom(
      '{}',
      'null',
      '{"meta":"YQ=="}',
      '{"meta":"YQ"}',
      '{"value":5}',
      '{"timeout":1.5}',
      '{"deadline":"2024-02-30T00:00:00Z"}',
      '{"context":{"deadline":"x"}}',
      '{"__proto__":{"meta":1}}',
    ),
  );
  const forgedFrame = fc
    .record({
      version: fc.oneof(fc.constant(1), byte),
      type: fc.oneof(fc.constantFrom(...knownTypes), byte),
      id: u64,
      fixed: fc.uint8Array({ minLength: 0, maxLength: 20 }),
      tail: fc.oneof(
        jsonish.map((s) => Buffer.from(s)),
        fc.uint8Array({ maxLength: 40 }).map((a) => Buffer.from(a)),
      ),
      lengthDelta: fc.oneof(fc.constant(0), fc.integer({ min: -12, max: 12 }), fc.constant(0xffff_ffff)),
    })
    .map(({ version, type, id, fixed, tail, lengthDelta }) => {
      const body = Buffer.concat([fixed, tail]);
      const h = Buffer.alloc(HEADER_LENGTH);
      h[0] = version;
      h[1] = type;
      h.writeBigUInt64BE(id, 2);
      const declared = lengthDelta === 0xffff_ffff ? lengthDelta : Math.max(0, body.length + lengthDelta);
      h.writeUInt32BE(declared, 10);
      return Buffer.concat([h, body]);
    });
  const randomInput = fc.oneof(
    fc.uint8Array({ maxLength: 200 }).map((a) => Buffer.from(a)),
    fc.array(forgedFrame, { minLength: 1, maxLength: 4 }).map((f) => Buffer.concat(f)),
    fc
      .tuple(anyPacket, fc.uint8Array({ maxLength: 60 }))
      .map(([p, garbage]) => Buffer.concat([encodePacket(p), Buffer.from(garbage)])),
  );

  it('random bytes: only typed errors, bounded buffering, always returns', () => {
    fc.assert(
      fc.property(
        randomInput,
        chunking,
        fc.oneof(fc.integer({ min: 0, max: 128 }), fc.constant(16 * 1024 * 1024)),
        (input, sizes, maxPacketLength) => {
          const decoder = new FrameDecoder({ maxPacketLength });
          let failed: unknown;
          for (const chunk of split(input, sizes)) {
            try {
              decoder.push(chunk, () => {});
            } catch (err) {
              failed = err;
              break;
            }
            expect(decoder.bufferedBytes).toBeLessThanOrEqual(maxPacketLength + HEADER_LENGTH);
            expect(decoder.bufferedBytes).toBeLessThanOrEqual(input.length);
          }
          if (failed !== undefined) {
            if (!(failed instanceof ProtocolError || failed instanceof FrameTooLargeError)) throw failed;
            expect(failed).toBeInstanceOf(GeminioError);
            expect(decoder.bufferedBytes).toBe(0);
            // Failed for good.
            expect(() => decoder.push(Buffer.alloc(1), () => {})).toThrow(GeminioError);
          }
        },
      ),
      { numRuns: RUNS.randomBytes },
    );
  });
});
