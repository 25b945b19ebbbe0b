/**
 * Byte-exact vectors from ../shared/geminio-protocol.md §1.7, which were checked against the Go encoder.
 * Each vector is encoded from a packet object and must equal the Go bytes, then decoded back to the same object.
 */
import { describe, expect, it } from 'vitest';
import { encodePacket, FrameDecoder, type Packet, PacketType as T } from '../../../sdk/frame/index.js';

const hex = (s: string) => Buffer.from(s.replace(/[^0-9a-f]/gi, ''), 'hex');
const b = (s: string) => Buffer.from(s);
const ZERO_TAIL = '"deadline":"0001-01-01T00:00:00Z","context":{"deadline":"0001-01-01T00:00:00Z"}}';

const vectors: Array<[string, Packet, Buffer]> = [
  [
    'Conn (Go client, no meta)',
    { type: T.Conn, id: 0x66543d2a00000011n, flags: 0x18, clientId: 0n, data: {} },
    hex('01 01 66 54 3d 2a 00 00 00 11 00 00 00 0c 18 00 00 00 00 00 00 00 00 00 7b 7d'),
  ],
  [
    'ConnAck',
    { type: T.ConnAck, id: 0x66543d2a00000011n, retCode: 0, clientId: 0x66543d2a00000001n, data: {} },
    hex('01 02 66 54 3d 2a 00 00 00 11 00 00 00 0b 00 66 54 3d 2a 00 00 00 01 7b 7d'),
  ],
  [
    'Session',
    {
      type: T.Session,
      id: 0x66543d2b00000015n,
      priority: 0,
      flags: 0x10,
      negotiateId: 0x66543d2b00000001n,
      data: {},
    },
    hex('01 31 66 54 3d 2b 00 00 00 15 00 00 00 0c 00 10 66 54 3d 2b 00 00 00 01 7b 7d'),
  ],
  [
    'SessionAck',
    {
      type: T.SessionAck,
      id: 0x66543d2b00000015n,
      negotiateId: 0x66543d2b00000001n,
      sessionId: 0x66543d2b00000002n,
      data: {},
    },
    hex(
      '01 32 66 54 3d 2b 00 00 00 15 00 00 00 14 00 00 66 54 3d 2b 00 00 00 01 66 54 3d 2b 00 00 00 02 7b 7d',
    ),
  ],
  [
    'Message "hello" on stream 1',
    { type: T.Message, id: 0x66543d2c00000017n, sessionId: 1n, data: { value: b('hello') } },
    Buffer.concat([
      hex('01 51 66 54 3d 2c 00 00 00 17 00 00 00 6c 00 00 00 00 00 00 00 01'),
      b(`{"value":"aGVsbG8=",${ZERO_TAIL}`),
    ]),
  ],
  [
    'MessageAck',
    { type: T.MessageAck, id: 0x66543d2c00000017n, sessionId: 1n, data: {} },
    Buffer.concat([
      hex('01 52 66 54 3d 2c 00 00 00 17 00 00 00 59 00 00 00 00 00 00 00 01'),
      b(`{${ZERO_TAIL}`),
    ]),
  ],
  [
    'Request echo("hello")',
    { type: T.Request, id: 0x66543d2d00000019n, sessionId: 1n, data: { key: b('echo'), value: b('hello') } },
    Buffer.concat([
      hex('01 71 66 54 3d 2d 00 00 00 19 00 00 00 7d 00 00 00 00 00 00 00 01'),
      b(`{"key":"ZWNobw==","value":"aGVsbG8=",${ZERO_TAIL}`),
    ]),
  ],
  [
    'Heartbeat',
    { type: T.Heartbeat, id: 0x66543d3e00000013n },
    hex('01 21 66 54 3d 3e 00 00 00 13 00 00 00 00'),
  ],
  [
    'HeartbeatAck',
    { type: T.HeartbeatAck, id: 0x66543d3e00000013n },
    hex('01 22 66 54 3d 3e 00 00 00 13 00 00 00 00'),
  ],
  ['DisConn', { type: T.DisConn, id: 0x66543d5000000023n }, hex('01 11 66 54 3d 50 00 00 00 23 00 00 00 00')],
  [
    'DisConnAck',
    { type: T.DisConnAck, id: 0x66543d5000000023n, retCode: 0, data: {} },
    hex('01 12 66 54 3d 50 00 00 00 23 00 00 00 03 00 7b 7d'),
  ],
  [
    'Register "echo"',
    { type: T.Register, id: 0x66543d2900000002n, sessionId: 1n, method: b('echo') },
    hex('01 81 66 54 3d 29 00 00 00 02 00 00 00 0c 00 00 00 00 00 00 00 01 65 63 68 6f'),
  ],
  [
    'RegisterAck',
    { type: T.RegisterAck, id: 0x66543d2900000002n, sessionId: 1n, data: {} },
    hex('01 82 66 54 3d 29 00 00 00 02 00 00 00 0a 00 00 00 00 00 00 00 01 7b 7d'),
  ],
  [
    'Stream "hi"',
    { type: T.Stream, id: 0x66543d2e0000001bn, sessionId: 0x66543d2b00000002n, payload: b('hi') },
    hex('01 61 66 54 3d 2e 00 00 00 1b 00 00 00 0a 66 54 3d 2b 00 00 00 02 68 69'),
  ],
  [
    'Dismiss',
    { type: T.Dismiss, id: 0x66543d4000000021n, sessionId: 0x66543d2b00000002n, data: {} },
    hex('01 41 66 54 3d 40 00 00 00 21 00 00 00 0a 66 54 3d 2b 00 00 00 02 7b 7d'),
  ],
  [
    'DismissAck',
    { type: T.DismissAck, id: 0x66543d4000000021n, sessionId: 0x66543d2b00000002n, data: {} },
    hex('01 42 66 54 3d 40 00 00 00 21 00 00 00 0a 66 54 3d 2b 00 00 00 02 7b 7d'),
  ],
  [
    'RequestCancel',
    { type: T.RequestCancel, id: 0x66543d2d00000019n, sessionId: 1n, cancelType: 1 },
    hex('01 73 66 54 3d 2d 00 00 00 19 00 00 00 0a 00 00 00 00 00 00 00 01 00 01'),
  ],
];

/** Fills in the keys the decoder always sets, so decoded packets compare equal to the vectors. */
function normalize(p: Packet): unknown {
  return JSON.parse(
    JSON.stringify(p, (_k, v) =>
      typeof v === 'bigint' ? `${v}n` : v?.type === 'Buffer' ? Buffer.from(v.data).toString('hex') : v,
    ),
    (_k, v) => v ?? undefined,
  );
}

describe('byte-exact vectors from the protocol reference', () => {
  for (const [name, packet, bytes] of vectors) {
    it(`encodes ${name} as Go does`, () => {
      expect(encodePacket(packet).toString('hex')).toBe(bytes.toString('hex'));
    });
    it(`decodes ${name}`, () => {
      const out: Packet[] = [];
      new FrameDecoder().push(bytes, (p) => out.push(p));
      expect(out).toHaveLength(1);
      expect(normalize(out[0]!)).toEqual(normalize(packet));
    });
  }

  it('Conn with meta "alice" has PacketLen 0x1d', () => {
    const buf = encodePacket({ type: T.Conn, id: 1n, flags: 0x18, clientId: 0n, data: { meta: b('alice') } });
    expect(buf.readUInt32BE(10)).toBe(0x1d);
    expect(buf.subarray(24).toString()).toBe('{"meta":"YWxpY2U="}');
  });

  it('Session with meta and peer', () => {
    const buf = encodePacket({
      type: T.Session,
      id: 1n,
      priority: 0,
      flags: 0x10,
      negotiateId: 2n,
      data: { meta: b('m'), peer: 'p' },
    });
    expect(buf.subarray(24).toString()).toBe('{"meta":"bQ==","peer":"p"}');
  });

  it('error MessageAck and unknown-method Response match Go JSON', () => {
    const ack = encodePacket({ type: T.MessageAck, id: 1n, sessionId: 1n, data: { error: 'broker full' } });
    expect(ack.subarray(22).toString()).toBe(`{"error":"broker full",${ZERO_TAIL}`);
    const rsp = encodePacket({
      type: T.Response,
      id: 1n,
      sessionId: 1n,
      data: { key: b('echo'), error: 'no such rpc: echo' },
    });
    expect(rsp.subarray(22).toString()).toBe(`{"key":"ZWNobw==","error":"no such rpc: echo",${ZERO_TAIL}`);
  });

  it('strings are HTML-escaped like Go', () => {
    const buf = encodePacket({ type: T.MessageAck, id: 1n, sessionId: 1n, data: { error: '<a&b>' } });
    expect(buf.subarray(22).toString()).toContain('"error":"\\u003ca\\u0026b\\u003e"');
  });

  it('deadlines are RFC 3339 with trimmed fractions and decode back', () => {
    const deadline = Date.UTC(2024, 4, 27, 8, 38, 39, 120);
    const buf = encodePacket({ type: T.Request, id: 1n, sessionId: 1n, data: { key: b('m'), deadline } });
    expect(buf.subarray(22).toString()).toContain('"deadline":"2024-05-27T08:38:39.12Z"');
    const out: Packet[] = [];
    new FrameDecoder().push(buf, (p) => out.push(p));
    expect((out[0] as { data: { deadline?: number } }).data.deadline).toBe(deadline);
  });

  it('accepts Go nanosecond times with zone offsets', () => {
    const json =
      '{"deadline":"2024-05-27T16:38:39.123456789+08:00","context":{"deadline":"0001-01-01T00:00:00Z"}}';
    const body = Buffer.concat([Buffer.alloc(8), b(json)]);
    body.writeBigUInt64BE(1n, 0);
    const head = Buffer.alloc(14);
    head[0] = 1;
    head[1] = T.Request;
    head.writeUInt32BE(body.length, 10);
    const out: Packet[] = [];
    new FrameDecoder().push(Buffer.concat([head, body]), (p) => out.push(p));
    const data = (out[0] as { data: { deadline?: number; contextDeadline?: number } }).data;
    expect(data.deadline).toBe(Date.UTC(2024, 4, 27, 8, 38, 39, 123));
    expect(data.contextDeadline).toBeUndefined();
  });
});
