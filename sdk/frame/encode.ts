/**
 * Pure encoder: a packet object in, the exact bytes the Go library would write out. No I/O, no state.
 */
import { InvalidArgumentError } from '../errors.js';
import { HEADER_LENGTH, PacketType, UINT64_MAX, VERSION } from './constants.js';
import { encodeConnData, encodeMessageDataAt, encodeRegisterData, encodeSessionData } from './json.js';
import type { Packet } from './packet.js';

const MAX_BODY = 0xffff_ffff;

function checkId(value: bigint, what: string): void {
  if (value < 0n || value > UINT64_MAX)
    throw new InvalidArgumentError(`${what} must fit in 64 unsigned bits`);
}

function header(buf: Buffer, type: number, id: bigint, bodyLength: number): void {
  checkId(id, 'packet id');
  if (bodyLength > MAX_BODY) throw new InvalidArgumentError('packet body longer than 4 GiB - 1');
  buf[0] = VERSION;
  buf[1] = type;
  buf.writeBigUInt64BE(id, 2);
  buf.writeUInt32BE(bodyLength, 10);
}

/** Fixed fields written after the header, then an optional tail (JSON or raw bytes). */
function frame(
  type: number,
  id: bigint,
  fixed: number,
  tail: Buffer | undefined,
  fill: (b: Buffer) => void,
): Buffer {
  const bodyLength = fixed + (tail?.length ?? 0);
  const buf = Buffer.allocUnsafe(HEADER_LENGTH + bodyLength);
  header(buf, type, id, bodyLength);
  fill(buf);
  if (tail) tail.copy(buf, HEADER_LENGTH + fixed);
  return buf;
}

function u64(buf: Buffer, value: bigint, offset: number, what: string): void {
  checkId(value, what);
  buf.writeBigUInt64BE(value, HEADER_LENGTH + offset);
}

/** Encodes one packet into one Buffer. */
export function encodePacket(p: Packet): Buffer {
  const H = HEADER_LENGTH;
  switch (p.type) {
    case PacketType.Conn:
      return frame(p.type, p.id, 10, encodeConnData(p.data), (b) => {
        b[H] = p.flags & 0xff;
        b[H + 1] = (p.capabilities ?? 0) & 0xff;
        u64(b, p.clientId, 2, 'client id');
      });
    case PacketType.ConnAck:
      return frame(p.type, p.id, 9, encodeConnData(p.data), (b) => {
        b[H] = p.retCode & 0xff;
        u64(b, p.clientId, 1, 'client id');
      });
    case PacketType.DisConnAck:
      return frame(p.type, p.id, 1, encodeConnData(p.data), (b) => {
        b[H] = p.retCode & 0xff;
      });
    case PacketType.DisConn:
    case PacketType.Heartbeat:
    case PacketType.HeartbeatAck:
      return frame(p.type, p.id, 0, undefined, () => {});
    case PacketType.Session:
      return frame(p.type, p.id, 10, encodeSessionData(p.data), (b) => {
        b[H] = p.priority & 0xff;
        b[H + 1] = p.flags & 0xff;
        u64(b, p.negotiateId, 2, 'negotiate id');
      });
    case PacketType.SessionAck:
      return frame(p.type, p.id, 18, encodeSessionData(p.data), (b) => {
        b[H] = 0;
        b[H + 1] = 0;
        u64(b, p.negotiateId, 2, 'negotiate id');
        u64(b, p.sessionId, 10, 'session id');
      });
    case PacketType.Dismiss:
    case PacketType.DismissAck:
      return frame(p.type, p.id, 8, encodeSessionData(p.data), (b) => u64(b, p.sessionId, 0, 'session id'));
    case PacketType.Message:
    case PacketType.MessageAck:
    case PacketType.Request:
    case PacketType.Response: {
      // The JSON is written in place after the header and stream ID: no second buffer, no copy.
      const buf = encodeMessageDataAt(p.data, H + 8);
      header(buf, p.type, p.id, buf.length - H);
      u64(buf, p.sessionId, 0, 'session id');
      return buf;
    }
    case PacketType.Stream:
      return frame(p.type, p.id, 8, p.payload, (b) => u64(b, p.sessionId, 0, 'session id'));
    case PacketType.RequestCancel:
      return frame(p.type, p.id, 10, undefined, (b) => {
        u64(b, p.sessionId, 0, 'session id');
        b.writeUInt16BE(p.cancelType & 0xffff, H + 8);
      });
    case PacketType.WindowUpdate:
      return frame(p.type, p.id, 12, undefined, (b) => {
        u64(b, p.sessionId, 0, 'session id');
        b.writeUInt32BE(p.increment >>> 0, H + 8);
      });
    case PacketType.Register:
      return frame(p.type, p.id, 8, p.method, (b) => u64(b, p.sessionId, 0, 'session id'));
    case PacketType.RegisterAck:
      return frame(p.type, p.id, 8, encodeRegisterData(p.data), (b) => u64(b, p.sessionId, 0, 'session id'));
    default: {
      const never: never = p;
      throw new InvalidArgumentError(`unknown packet type ${(never as { type: number }).type}`);
    }
  }
}

/**
 * Header and stream ID of a Stream packet, without the payload: the connection writes the payload as a separate
 * Buffer (corked together), so raw bytes are never copied.
 */
export function encodeStreamHeader(id: bigint, sessionId: bigint, payloadLength: number): Buffer {
  const buf = Buffer.allocUnsafe(HEADER_LENGTH + 8);
  header(buf, PacketType.Stream, id, 8 + payloadLength);
  buf.writeBigUInt64BE(sessionId, HEADER_LENGTH);
  return buf;
}
