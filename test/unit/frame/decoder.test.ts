/**
 * The incremental FrameDecoder: chunking independence, truncation, size limits checked from the header alone,
 * strict rejection of everything Go would refuse, and tolerance of everything Go accepts.
 */
import { describe, expect, it } from 'vitest';
import { FrameTooLargeError, GeminioError, ProtocolError } from '../../../sdk/errors.js';
import {
  DEFAULT_MAX_PACKET_LENGTH,
  encodePacket,
  FrameDecoder,
  fixedBodyLength,
  HEADER_LENGTH,
  type MessageData,
  type Packet,
  PacketType as T,
} from '../../../sdk/frame/index.js';

const b = (s: string) => Buffer.from(s);

/** A seeded PRNG (mulberry32), so every split below is reproducible. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A 14-byte header, written by hand. */
function header(type: number, length: number, id = 7n, version = 0x01): Buffer {
  const h = Buffer.alloc(HEADER_LENGTH);
  h[0] = version;
  h[1] = type;
  h.writeBigUInt64BE(id, 2);
  h.writeUInt32BE(length, 10);
  return h;
}

/** A whole frame, written by hand: header + body. */
function frame(type: number, body: Buffer, id = 7n): Buffer {
  return Buffer.concat([header(type, body.length, id), body]);
}

/** A frame of a JSON-carrying type: the type's fixed part (zeros, stream ID 1 where there is one) then `json`. */
function jsonFrame(type: number, json: string): Buffer {
  const fixed = Buffer.alloc(fixedBodyLength[type]!.min);
  if (fixed.length === 8) fixed.writeBigUInt64BE(1n, 0);
  return frame(type, Buffer.concat([fixed, b(json)]));
}

/** Comparable form: Buffers as hex, undefined fields dropped. */
function norm(value: unknown): unknown {
  if (Buffer.isBuffer(value)) return `hex:${value.toString('hex')}`;
  if (Array.isArray(value)) return value.map(norm);
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) if (v !== undefined) out[k] = norm(v);
    return out;
  }
  return value;
}

function decodeAll(chunks: Buffer[], decoder = new FrameDecoder()): Packet[] {
  const out: Packet[] = [];
  for (const c of chunks) decoder.push(c, (p) => out.push(p));
  return out;
}

function decodeOne(bytes: Buffer): Packet {
  const out = decodeAll([bytes]);
  expect(out).toHaveLength(1);
  return out[0]!;
}

function dataOf(bytes: Buffer): Record<string, unknown> {
  return (decodeOne(bytes) as unknown as { data: Record<string, unknown> }).data;
}

function messageData(json: string): MessageData {
  return dataOf(jsonFrame(T.Message, json)) as MessageData;
}

const DEADLINE = Date.UTC(2024, 4, 27, 8, 38, 39, 123);

/** One packet (or more) of every type, with non-trivial fields. */
const samples: Packet[] = [
  { type: T.Conn, id: 0x66543d2a00000011n, flags: 0x18, clientId: 0n, data: {} },
  { type: T.Conn, id: 1n, flags: 0x08, clientId: 0xffff_ffff_ffff_ffffn, data: { meta: b('alice') } },
  { type: T.ConnAck, id: 0x66543d2a00000011n, retCode: 0, clientId: 0x66543d2a00000001n, data: {} },
  { type: T.ConnAck, id: 2n, retCode: 1, clientId: 5n, data: { error: 'go <away> & "stay"' } },
  { type: T.DisConn, id: 0x66543d5000000023n },
  { type: T.DisConnAck, id: 0x66543d5000000023n, retCode: 0, data: {} },
  { type: T.Heartbeat, id: 0x66543d3e00000013n },
  { type: T.HeartbeatAck, id: 0x66543d3e00000013n },
  {
    type: T.Session,
    id: 0x66543d2b00000015n,
    priority: 0,
    flags: 0x10,
    negotiateId: 0x66543d2b00000001n,
    data: { meta: b('m'), peer: 'p\u2028é' },
  },
  {
    type: T.SessionAck,
    id: 0x66543d2b00000015n,
    negotiateId: 0x66543d2b00000001n,
    sessionId: 0x66543d2b00000002n,
    data: {},
  },
  { type: T.SessionAck, id: 3n, negotiateId: 4n, sessionId: 4n, data: { error: 'stream id 4 is in use' } },
  { type: T.Dismiss, id: 0x66543d4000000021n, sessionId: 0x66543d2b00000002n, data: {} },
  { type: T.DismissAck, id: 0x66543d4000000021n, sessionId: 0x66543d2b00000002n, data: {} },
  {
    type: T.Message,
    id: 0x66543d2c00000017n,
    sessionId: 1n,
    data: { value: b('hello'), topic: 't😀', custom: Buffer.from([0, 255, 1]) },
  },
  { type: T.MessageAck, id: 0x66543d2c00000017n, sessionId: 1n, data: {} },
  {
    type: T.Request,
    id: 0x66543d2d00000019n,
    sessionId: 1n,
    data: { key: b('echo'), value: b('hello'), timeout: 5_000_000_000, deadline: DEADLINE },
  },
  {
    type: T.Response,
    id: 0x66543d2d00000019n,
    sessionId: 1n,
    data: { key: b('echo'), error: 'no such rpc: echo', contextDeadline: DEADLINE + 1 },
  },
  { type: T.Stream, id: 0x66543d2e0000001bn, sessionId: 0x66543d2b00000002n, payload: b('hi') },
  { type: T.Stream, id: 9n, sessionId: 0x66543d2b00000002n, payload: Buffer.alloc(0) },
  { type: T.RequestCancel, id: 0x66543d2d00000019n, sessionId: 1n, cancelType: 2 },
  { type: T.Register, id: 0x66543d2900000002n, sessionId: 1n, method: b('echo') },
  { type: T.RegisterAck, id: 0x66543d2900000002n, sessionId: 1n, data: { error: 'dup' } },
  { type: T.WindowUpdate, id: 3n, sessionId: 0x66543d2b00000002n, increment: 0xffff_ffff },
  { type: T.Conn, id: 4n, flags: 0x18, capabilities: 0x03, clientId: 7n, data: {} },
  { type: T.ConnAck, id: 4n, retCode: 0, clientId: 7n, data: { ext: { caps: 3 } } },
];

const encoded = samples.map(encodePacket);
const all = Buffer.concat(encoded);
/** Offset just past each packet in `all`. */
const ends = encoded.reduce<number[]>((acc, e) => {
  acc.push((acc.at(-1) ?? 0) + e.length);
  return acc;
}, []);

function expectProtocolError(err: unknown): void {
  expect(err).toBeInstanceOf(ProtocolError);
  expect(err).toBeInstanceOf(GeminioError);
  expect((err as GeminioError).code).toBe('GEMINIO_ERR_PROTOCOL');
}

function expectTooLarge(err: unknown): void {
  expect(err).toBeInstanceOf(FrameTooLargeError);
  expect(err).toBeInstanceOf(GeminioError);
  expect((err as GeminioError).code).toBe('GEMINIO_ERR_FRAME_TOO_LARGE');
}

function pushError(decoder: FrameDecoder, bytes: Buffer): unknown {
  try {
    decoder.push(bytes, () => {});
  } catch (err) {
    return err;
  }
  return undefined;
}

describe('FrameDecoder: chunking', () => {
  it('covers every packet type', () => {
    const covered = new Set(samples.map((p) => p.type));
    for (const type of Object.values(T)) expect(covered.has(type)).toBe(true);
  });

  it('decodes every type fed whole, one packet per push, to the packet that was encoded', () => {
    const decoder = new FrameDecoder();
    for (const [i, bytes] of encoded.entries()) {
      const out = decodeAll([bytes], decoder);
      expect(out).toHaveLength(1);
      expect(norm(out[0])).toEqual(norm(samples[i]));
      expect(decoder.bufferedBytes).toBe(0);
    }
  });

  it('decodes the concatenation fed whole, byte at a time and in 400 seeded random splits identically', () => {
    const whole = decodeAll([all]);
    expect(norm(whole)).toEqual(norm(samples));

    const decoder = new FrameDecoder();
    const byByte: Packet[] = [];
    for (let i = 0; i < all.length; i++) {
      decoder.push(all.subarray(i, i + 1), (p) => byByte.push(p));
      expect(byByte).toHaveLength(ends.filter((e) => e <= i + 1).length);
    }
    expect(norm(byByte)).toEqual(norm(samples));
    expect(decoder.bufferedBytes).toBe(0);

    const rand = prng(0x9e3779b9);
    for (let run = 0; run < 400; run++) {
      const cuts = new Set<number>();
      const n = 1 + Math.floor(rand() * 60);
      for (let i = 0; i < n; i++) cuts.add(Math.floor(rand() * (all.length + 1)));
      const points = [0, ...[...cuts].sort((x, y) => x - y), all.length];
      // Copies, so no chunk shares memory with another (the decoder must not depend on it).
      const chunks = points.slice(1).map((end, i) => Buffer.from(all.subarray(points[i]!, end)));
      const d = new FrameDecoder();
      const out = decodeAll(chunks, d);
      expect(norm(out)).toEqual(norm(samples));
      expect(d.bufferedBytes).toBe(0);
    }
  });

  it('includes empty chunks without effect', () => {
    const out = decodeAll([Buffer.alloc(0), all.subarray(0, 5), Buffer.alloc(0), all.subarray(5)]);
    expect(norm(out)).toEqual(norm(samples));
  });
});

describe('FrameDecoder: truncated input', () => {
  it('for every prefix length k, yields exactly the packets complete within k bytes and no error', () => {
    for (let k = 0; k <= all.length; k++) {
      const d = new FrameDecoder();
      const out = decodeAll([all.subarray(0, k)], d);
      const complete = ends.filter((e) => e <= k).length;
      expect(out).toHaveLength(complete);
      expect(norm(out)).toEqual(norm(samples.slice(0, complete)));
      const lastEnd = complete === 0 ? 0 : ends[complete - 1]!;
      expect(d.bufferedBytes).toBeLessThanOrEqual(k);
      expect(d.bufferedBytes).toBeLessThanOrEqual(k - lastEnd);
      // The header of a partial packet is parsed (and dropped from the buffer) once all 14 bytes are there.
      expect(d.bufferedBytes).toBeGreaterThanOrEqual(k - lastEnd - HEADER_LENGTH);
    }
  });

  it('a prefix fed byte at a time never buffers more than was fed and never errors', () => {
    for (const k of [1, 13, 14, 15, ends[0]! - 1, ends[3]! + 20, all.length - 1]) {
      const d = new FrameDecoder();
      let fed = 0;
      for (let i = 0; i < k; i++) {
        d.push(all.subarray(i, i + 1), () => {});
        fed++;
        expect(d.bufferedBytes).toBeLessThanOrEqual(fed);
      }
    }
  });
});

describe('FrameDecoder: declared length checked from the header alone', () => {
  const nonExactTypes = Object.entries(fixedBodyLength)
    .filter(([, f]) => !f.exact)
    .map(([t]) => Number(t));

  it('a header declaring 0xffffffff body bytes throws FrameTooLargeError at the 14th byte, for every type', () => {
    for (const type of nonExactTypes) {
      const d = new FrameDecoder();
      const h = header(type, 0xffff_ffff);
      for (let i = 0; i < HEADER_LENGTH - 1; i++) d.push(h.subarray(i, i + 1), () => {});
      expect(d.bufferedBytes).toBe(HEADER_LENGTH - 1);
      const err = pushError(d, h.subarray(HEADER_LENGTH - 1));
      expectTooLarge(err);
      expect(d.bufferedBytes).toBe(0);
      // Failed for good.
      expectTooLarge(pushError(d, Buffer.alloc(0)));
      expect(d.bufferedBytes).toBe(0);
    }
  });

  it('whole header in one chunk: same error, nothing buffered for the body', () => {
    const d = new FrameDecoder();
    expectTooLarge(pushError(d, header(T.Stream, 0xffff_ffff)));
    expect(d.bufferedBytes).toBe(0);
  });

  it('the default limit: DEFAULT_MAX_PACKET_LENGTH is accepted, one more is not', () => {
    const ok = new FrameDecoder();
    ok.push(header(T.Stream, DEFAULT_MAX_PACKET_LENGTH), () => {});
    expect(ok.bufferedBytes).toBe(0);
    expectTooLarge(pushError(new FrameDecoder(), header(T.Stream, DEFAULT_MAX_PACKET_LENGTH + 1)));
  });

  it('a custom maxPacketLength is honoured exactly', () => {
    const max = 100;
    const d = new FrameDecoder({ maxPacketLength: max });
    expect(d.maxPacketLength).toBe(max);
    const out = decodeAll([frame(T.Stream, Buffer.alloc(max, 1))], d);
    expect(out).toHaveLength(1);
    expect((out[0] as { payload: Buffer }).payload.length).toBe(max - 8);

    for (const type of nonExactTypes) {
      const small = new FrameDecoder({ maxPacketLength: max });
      expectTooLarge(pushError(small, header(type, max + 1)));
      expect(small.bufferedBytes).toBe(0);
      expectTooLarge(pushError(small, frame(T.Heartbeat, Buffer.alloc(0))));
      const huge = new FrameDecoder({ maxPacketLength: max });
      expectTooLarge(pushError(huge, header(type, 0xffff_ffff)));
      expect(huge.bufferedBytes).toBe(0);
    }
  });

  it('the check happens before body bytes are needed even when they follow in the same chunk', () => {
    const d = new FrameDecoder({ maxPacketLength: 16 });
    expectTooLarge(pushError(d, Buffer.concat([header(T.Stream, 17), Buffer.alloc(17)])));
    expect(d.bufferedBytes).toBe(0);
  });
});

describe('FrameDecoder: protocol errors', () => {
  const cases: Array<[string, Buffer]> = [];
  const add = (name: string, bytes: Buffer) => cases.push([name, bytes]);

  for (const [typeText, fixed] of Object.entries(fixedBodyLength)) {
    const type = Number(typeText);
    const name = `0x${type.toString(16)}`;
    if (fixed.min > 0)
      add(`${name}: length ${fixed.min - 1}, below the fixed part`, header(type, fixed.min - 1));
    if (fixed.min > 1) add(`${name}: length 0`, header(type, 0));
    if (fixed.exact) {
      add(
        `${name}: length ${fixed.min + 1}, above its exact length`,
        frame(type, Buffer.alloc(fixed.min + 1)),
      );
    }
  }
  for (const type of [T.DisConn, T.Heartbeat, T.HeartbeatAck]) {
    add(`0x${type.toString(16)} with a 1-byte body`, frame(type, Buffer.from([0])));
    add(`0x${type.toString(16)} with a 2-byte "{}" body`, frame(type, b('{}')));
  }
  add('RequestCancel with 9 bytes', frame(T.RequestCancel, Buffer.alloc(9)));
  for (const type of [0x99, 0x00, 0x13, 0x03, 0x23, 0x43, 0x62, 0x74, 0x83, 0xff]) {
    add(`unknown type 0x${type.toString(16)}`, header(type, 0));
    add(`unknown type 0x${type.toString(16)} with a body`, frame(type, Buffer.alloc(12)));
  }
  for (const version of [0x00, 0x02, 0x10, 0xff]) {
    add(`version 0x${version.toString(16)}`, header(T.Heartbeat, 0, 1n, version));
  }

  const jsonTypes = [
    T.Conn,
    T.ConnAck,
    T.DisConnAck,
    T.Session,
    T.SessionAck,
    T.Dismiss,
    T.DismissAck,
    T.Message,
    T.MessageAck,
    T.Request,
    T.Response,
    T.RegisterAck,
  ];
  for (const type of jsonTypes) {
    const name = `0x${type.toString(16)}`;
    for (const json of [
      '',
      '{',
      '{"meta":}',
      '{"a":1',
      '{}x',
      '{} {}',
      'nul',
      "{'a':1}",
      '{"a":1,}',
      '\u00ff',
    ]) {
      add(`${name}: invalid JSON ${JSON.stringify(json)}`, jsonFrame(type, json));
    }
    for (const json of ['[]', '[{}]', '"x"', '5', 'true']) {
      add(`${name}: JSON ${json} is not an object`, jsonFrame(type, json));
    }
    add(`${name}: "error" is a number`, jsonFrame(type, '{"error":5}'));
  }
  for (const type of [T.Conn, T.ConnAck, T.DisConnAck, T.Session, T.SessionAck, T.Dismiss, T.DismissAck]) {
    const name = `0x${type.toString(16)}`;
    add(`${name}: meta is a number`, jsonFrame(type, '{"meta":5}'));
    add(`${name}: meta is an object`, jsonFrame(type, '{"meta":{}}'));
    add(`${name}: meta is unpadded base64`, jsonFrame(type, '{"meta":"YQ"}'));
    add(`${name}: meta is URL-safe base64`, jsonFrame(type, '{"meta":"-_8="}'));
    add(`${name}: meta is URL-safe base64 (2)`, jsonFrame(type, '{"meta":"a-b_"}'));
    add(`${name}: meta has a bad character`, jsonFrame(type, '{"meta":"YQ==!"}'));
  }
  for (const type of [T.Session, T.SessionAck, T.Dismiss, T.DismissAck]) {
    add(`0x${type.toString(16)}: peer is a boolean`, jsonFrame(type, '{"peer":true}'));
  }
  for (const type of [T.Message, T.MessageAck, T.Request, T.Response]) {
    const name = `0x${type.toString(16)}`;
    for (const key of ['key', 'value', 'custom']) {
      add(`${name}: ${key} is a number`, jsonFrame(type, `{"${key}":5}`));
      add(`${name}: ${key} is unpadded base64`, jsonFrame(type, `{"${key}":"aGVsbG8"}`));
      add(`${name}: ${key} is URL-safe base64`, jsonFrame(type, `{"${key}":"_w=="}`));
    }
    add(`${name}: topic is a number`, jsonFrame(type, '{"topic":5}'));
    add(`${name}: timeout is 1.5`, jsonFrame(type, '{"timeout":1.5}'));
    add(`${name}: timeout is a string`, jsonFrame(type, '{"timeout":"5"}'));
    add(`${name}: timeout is a boolean`, jsonFrame(type, '{"timeout":true}'));
    for (const time of [
      '"yesterday"',
      '""',
      '5',
      '"2024-05-27"',
      '"2024-05-27 08:38:39Z"',
      '"2024-05-27T08:38:39"',
      '"2024-05-27T08:38:39.Z"',
      '"2024-13-01T00:00:00Z"',
      '"2024-05-27T08:61:00Z"',
      '"2024-05-27T08:38:39+0800"',
    ]) {
      add(`${name}: deadline ${time}`, jsonFrame(type, `{"deadline":${time}}`));
      add(`${name}: context.deadline ${time}`, jsonFrame(type, `{"context":{"deadline":${time}}}`));
    }
    add(`${name}: context is a number`, jsonFrame(type, '{"context":5}'));
    add(`${name}: context is an array`, jsonFrame(type, '{"context":[]}'));
  }

  it.each(cases)('%s: ProtocolError, and the decoder stays failed', (_name, bytes) => {
    const d = new FrameDecoder();
    const err = pushError(d, bytes);
    expectProtocolError(err);
    expect(d.bufferedBytes).toBe(0);
    // A second push throws too, even of a valid frame, and nothing is decoded.
    const seen: Packet[] = [];
    expect(() => d.push(encodePacket({ type: T.Heartbeat, id: 1n }), (p) => seen.push(p))).toThrow(
      ProtocolError,
    );
    expect(() => d.push(Buffer.alloc(0), (p) => seen.push(p))).toThrow(ProtocolError);
    expect(seen).toHaveLength(0);

    // Fed byte at a time, after a valid packet: the valid packet comes out, then the same kind of error.
    const d2 = new FrameDecoder();
    const out: Packet[] = [];
    const input = Buffer.concat([encodePacket({ type: T.Heartbeat, id: 2n }), bytes]);
    let thrown: unknown;
    for (let i = 0; i < input.length && thrown === undefined; i++) {
      try {
        d2.push(input.subarray(i, i + 1), (p) => out.push(p));
      } catch (e) {
        thrown = e;
      }
    }
    expectProtocolError(thrown);
    expect(out).toHaveLength(1);
  });

  it('an error thrown by onPacket fails the decoder too', () => {
    const d = new FrameDecoder();
    const boom = new ProtocolError('handler refused');
    expect(() =>
      d.push(all, () => {
        throw boom;
      }),
    ).toThrow(boom);
    expect(() => d.push(Buffer.alloc(0), () => {})).toThrow(boom);
    expect(d.bufferedBytes).toBe(0);
  });

  // Go's encoding/json refuses a non-integer literal for an int64 (time.Duration) even when its value is
  // integral: strconv.ParseInt fails on "1.5e9" and "100.0" (see the protocol reference, §1.4).
  it('timeout written as a float literal with an integral value (1.5e9, 100.0, 1e3) is a ProtocolError', () => {
    for (const literal of ['1.5e9', '100.0', '1e3']) {
      const err = pushError(new FrameDecoder(), jsonFrame(T.Request, `{"timeout":${literal}}`));
      expectProtocolError(err);
    }
  });

  // Go's RFC 3339 parser range-checks every field (day against the month, hour 0-23); Date.parse rolls
  // 2024-02-30 over to March 1 and reads T24:00 as the next midnight.
  it('calendar-invalid times (Feb 30, Apr 31, hour 24) are a ProtocolError', () => {
    for (const time of [
      '2024-02-30T00:00:00Z',
      '2023-02-29T00:00:00Z',
      '2024-04-31T00:00:00Z',
      '2024-01-01T24:00:00Z',
    ]) {
      const err = pushError(new FrameDecoder(), jsonFrame(T.Request, `{"deadline":"${time}"}`));
      expectProtocolError(err);
    }
  });
});

describe('FrameDecoder: tolerance (what Go accepts)', () => {
  const withJson = [
    T.Conn,
    T.ConnAck,
    T.DisConnAck,
    T.Session,
    T.SessionAck,
    T.Dismiss,
    T.DismissAck,
    T.Message,
    T.MessageAck,
    T.Request,
    T.Response,
    T.RegisterAck,
  ];

  it('`null`, `{}` and nulls for every key mean "all unset", for every JSON-carrying type', () => {
    for (const type of withJson) {
      for (const json of [
        'null',
        '{}',
        ' { } ',
        '{"meta":null,"error":null,"peer":null,"key":null,"value":null,"topic":null,"custom":null,"timeout":null,"deadline":null,"context":null}',
      ]) {
        const data = dataOf(jsonFrame(type, json));
        expect(norm(data)).toEqual({});
      }
    }
  });

  it('missing keys are unset, present ones are read', () => {
    expect(norm(dataOf(jsonFrame(T.Conn, '{"error":"e"}')))).toEqual({ error: 'e' });
    expect(norm(dataOf(jsonFrame(T.Session, '{"peer":"p"}')))).toEqual({ peer: 'p' });
    expect(norm(messageData('{"topic":"t"}'))).toEqual({ topic: 't' });
  });

  it('keys match case-insensitively', () => {
    expect(norm(dataOf(jsonFrame(T.Conn, '{"Meta":"YQ=="}')))).toEqual({ meta: 'hex:61' });
    expect(norm(dataOf(jsonFrame(T.Conn, '{"META":"YQ==","ERROR":"e"}')))).toEqual({
      meta: 'hex:61',
      error: 'e',
    });
    expect(norm(dataOf(jsonFrame(T.SessionAck, '{"mEtA":"YQ==","Peer":"p","Error":"x"}')))).toEqual({
      meta: 'hex:61',
      peer: 'p',
      error: 'x',
    });
    expect(norm(dataOf(jsonFrame(T.RegisterAck, '{"ERROR":"dup"}')))).toEqual({ error: 'dup' });
    const m = messageData(
      '{"Key":"ZWNobw==","VALUE":"aGk=","Topic":"t","Custom":"Yw==","Error":"e","TimeOut":7,' +
        '"Deadline":"2024-05-27T08:38:39.123Z","Context":{"DEADLINE":"2024-05-27T08:38:39.124Z"}}',
    );
    expect(norm(m)).toEqual({
      key: 'hex:6563686f',
      value: 'hex:6869',
      topic: 't',
      custom: 'hex:63',
      error: 'e',
      timeout: 7,
      deadline: DEADLINE,
      contextDeadline: DEADLINE + 1,
    });
  });

  it('unknown keys of any JSON type are ignored', () => {
    expect(
      norm(dataOf(jsonFrame(T.Conn, '{"meta":"YQ==","extra":[1,{"a":null}],"x":1.5,"y":"z","n":null}'))),
    ).toEqual({ meta: 'hex:61' });
    expect(
      norm(messageData('{"value":"aGk=","context":{"deadline":"0001-01-01T00:00:00Z","other":{}}}')),
    ).toEqual({ value: 'hex:6869' });
    expect(norm(dataOf(jsonFrame(T.RegisterAck, '{"cnss":2,"constructor":"x","toString":5}')))).toEqual({});
  });

  // `__proto__` is just another unknown key to Go. Copying it onto a plain object literal sets that object's
  // prototype, which then supplies "meta" (or "deadline") to the reader.
  it('an unknown "__proto__" key is ignored like any other unknown key', () => {
    expect(norm(dataOf(jsonFrame(T.Conn, '{"__proto__":{"meta":"YQ==","error":"smuggled"}}')))).toEqual({});
    expect(norm(messageData('{"__proto__":{"value":"aGk="}}'))).toEqual({});
    expect(norm(messageData('{"context":{"__proto__":{"deadline":"2024-05-27T08:38:39Z"}}}'))).toEqual({});
  });

  // Go's decoder maps every key, whatever its case, to the same field and assigns in document order, so the
  // last duplicate wins; it does not prefer the exact-case spelling.
  it('duplicate keys that differ only in case: the last one wins, as in Go', () => {
    expect(norm(dataOf(jsonFrame(T.Conn, '{"meta":"YQ==","Meta":"Yg=="}')))).toEqual({ meta: 'hex:62' });
    expect(norm(dataOf(jsonFrame(T.Conn, '{"Meta":"Yg==","meta":"YQ=="}')))).toEqual({ meta: 'hex:61' });
  });

  it('the zero time means unset, in any zone', () => {
    expect(
      norm(messageData('{"deadline":"0001-01-01T00:00:00Z","context":{"deadline":"0001-01-01T00:00:00Z"}}')),
    ).toEqual({});
    expect(norm(messageData('{"deadline":"0001-01-01T08:00:00+08:00"}'))).toEqual({});
    expect(norm(messageData('{"timeout":0}'))).toEqual({});
  });

  it('times with zone offsets and up to 9 fraction digits', () => {
    const cases: Array<[string, number]> = [
      ['2024-05-27T16:38:39.123456789+08:00', DEADLINE],
      ['2024-05-27T03:08:39.123456789-05:30', DEADLINE],
      ['2024-05-27T08:38:39.123456789Z', DEADLINE],
      ['2024-05-27T08:38:39.1234Z', DEADLINE],
      ['2024-05-27T08:38:39.123999999Z', DEADLINE], // truncated, not rounded
      ['2024-05-27T08:38:39.12Z', DEADLINE - 3],
      ['2024-05-27T08:38:39.1Z', DEADLINE - 23],
      ['2024-05-27T08:38:39Z', DEADLINE - 123],
      ['2024-05-27T08:38:39+00:00', DEADLINE - 123],
    ];
    for (const [time, ms] of cases) {
      const m = messageData(`{"deadline":"${time}","context":{"deadline":"${time}"}}`);
      expect(m.deadline, time).toBe(ms);
      expect(m.contextDeadline, time).toBe(ms);
    }
  });

  it('Go-style integer timeouts (nanoseconds), including negative ones', () => {
    expect(messageData('{"timeout":5000000000}').timeout).toBe(5_000_000_000);
    expect(messageData('{"timeout":-1}').timeout).toBe(-1);
  });

  it('padded standard base64 with every padding length, and empty strings', () => {
    expect(norm(messageData('{"value":"YQ=="}'))).toEqual({ value: 'hex:61' });
    expect(norm(messageData('{"value":"YWI="}'))).toEqual({ value: 'hex:6162' });
    expect(norm(messageData('{"value":"YWJj"}'))).toEqual({ value: 'hex:616263' });
    expect(norm(messageData('{"value":"+/8="}'))).toEqual({ value: 'hex:fbff' });
    const empty = messageData('{"value":"","topic":"","error":""}');
    expect(empty.value === undefined || empty.value.length === 0).toBe(true);
    expect(empty.topic).toBeUndefined();
    expect(empty.error).toBeUndefined();
  });

  it('JSON escapes and unicode in strings', () => {
    expect(messageData('{"error":"\\u003ca\\u0026b\\u003e \\u2028 \\ud83d\\ude00 é"}').error).toBe(
      '<a&b> \u2028 😀 é',
    );
  });

  it('Conn/ConnAck/Session fixed fields are read whatever the JSON', () => {
    const conn = decodeOne(
      frame(T.Conn, Buffer.concat([Buffer.from([0xff, 0xaa]), Buffer.alloc(8, 0xee), b('{}')])),
    );
    expect(conn).toMatchObject({ type: T.Conn, flags: 0xff, clientId: 0xeeeeeeeeeeeeeeeen });
    const ack = decodeOne(
      frame(
        T.SessionAck,
        Buffer.concat([Buffer.from([9, 9]), Buffer.alloc(8, 1), Buffer.alloc(8, 2), b('{}')]),
      ),
    );
    expect(ack).toMatchObject({ negotiateId: 0x0101010101010101n, sessionId: 0x0202020202020202n });
  });
});
