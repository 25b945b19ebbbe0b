/**
 * Incremental decoder: feed it chunks of any size, it hands back whole packets. No I/O, no timers.
 *
 * The header is validated (version, known type, declared length against `maxPacketLength` and against the type's
 * fixed part) before a single body byte is buffered, so a peer cannot make us allocate what it merely declares.
 */
import { FrameTooLargeError, ProtocolError } from '../errors.js';
import { fixedBodyLength, HEADER_LENGTH, PacketType, packetTypeName, VERSION } from './constants.js';
import { decodeConnData, decodeMessageData, decodeRegisterData, decodeSessionData } from './json.js';
import type { Packet } from './packet.js';

/** 16 MiB: above the 10 MiB cap newer Go releases enforce, so anything a Go peer accepts, we accept. */
export const DEFAULT_MAX_PACKET_LENGTH = 16 * 1024 * 1024;

const EMPTY = Buffer.alloc(0);

interface Header {
  type: number;
  id: bigint;
  length: number;
  /** Parts mode, Stream packets: the stream ID once read, and payload bytes still to come. */
  sessionId?: bigint;
  remaining?: number;
}

/** Decodes one body whose length has already been checked against the type's fixed part. */
export function decodeBody(type: number, id: bigint, body: Buffer): Packet {
  switch (type) {
    case PacketType.Conn:
      return {
        type,
        id,
        flags: body[0]!,
        clientId: body.readBigUInt64BE(2),
        data: decodeConnData(body.subarray(10)),
        // The reserved byte: geminio-node capability bits, absent (0) from Go.
        ...(body[1] ? { capabilities: body[1] } : {}),
      };
    case PacketType.ConnAck:
      return {
        type,
        id,
        retCode: body[0]!,
        clientId: body.readBigUInt64BE(1),
        data: decodeConnData(body.subarray(9)),
      };
    case PacketType.DisConnAck:
      return { type, id, retCode: body[0]!, data: decodeConnData(body.subarray(1)) };
    case PacketType.DisConn:
    case PacketType.Heartbeat:
    case PacketType.HeartbeatAck:
      return { type, id };
    case PacketType.Session:
      return {
        type,
        id,
        priority: body[0]!,
        flags: body[1]!,
        negotiateId: body.readBigUInt64BE(2),
        data: decodeSessionData(body.subarray(10)),
      };
    case PacketType.SessionAck:
      return {
        type,
        id,
        negotiateId: body.readBigUInt64BE(2),
        sessionId: body.readBigUInt64BE(10),
        data: decodeSessionData(body.subarray(18)),
      };
    case PacketType.Dismiss:
    case PacketType.DismissAck:
      return { type, id, sessionId: body.readBigUInt64BE(0), data: decodeSessionData(body.subarray(8)) };
    case PacketType.Message:
    case PacketType.MessageAck:
    case PacketType.Request:
    case PacketType.Response:
      return { type, id, sessionId: body.readBigUInt64BE(0), data: decodeMessageData(body.subarray(8)) };
    case PacketType.Stream:
      return { type, id, sessionId: body.readBigUInt64BE(0), payload: body.subarray(8) };
    case PacketType.RequestCancel:
      return { type, id, sessionId: body.readBigUInt64BE(0), cancelType: body.readUInt16BE(8) };
    case PacketType.Register:
      return { type, id, sessionId: body.readBigUInt64BE(0), method: body.subarray(8) };
    case PacketType.WindowUpdate:
      return { type, id, sessionId: body.readBigUInt64BE(0), increment: body.readUInt32BE(8) };
    case PacketType.RegisterAck:
      return { type, id, sessionId: body.readBigUInt64BE(0), data: decodeRegisterData(body.subarray(8)) };
    default:
      throw new ProtocolError(`unknown packet type 0x${type.toString(16).padStart(2, '0')}`);
  }
}

/** Validates a header; throws before anything is allocated for the body. */
export function checkHeader(version: number, type: number, length: number, maxPacketLength: number): void {
  if (version !== VERSION) throw new ProtocolError(`unsupported version 0x${version.toString(16)}`);
  const fixed = fixedBodyLength[type];
  if (fixed === undefined)
    throw new ProtocolError(`unknown packet type 0x${type.toString(16).padStart(2, '0')}`);
  if (length > maxPacketLength) {
    throw new FrameTooLargeError(
      `${packetTypeName[type]} declares ${length} body bytes, limit is ${maxPacketLength}`,
    );
  }
  if (fixed.exact ? length !== fixed.min : length < fixed.min) {
    throw new ProtocolError(
      `${packetTypeName[type]} body length ${length} ${fixed.exact ? 'must be' : 'is below the fixed part of'} ${fixed.min}`,
    );
  }
}

export class FrameDecoder {
  /** Largest body a frame may declare; the connection lowers it until the handshake is done. */
  maxPacketLength: number;
  private chunks: Buffer[] = [];
  private offset = 0;
  private buffered = 0;
  private header: Header | null = null;
  private failure: Error | null = null;
  private readonly streamParts: boolean;

  /**
   * `streamParts`: deliver a Stream packet's payload as it arrives, as several Stream packets of the same stream
   * (views into the socket's chunks), instead of copying a payload that spans chunks into one buffer. A byte
   * stream does not care where packets were cut; the connection uses it, the codec tests use whole packets.
   */
  constructor(options: { maxPacketLength?: number; streamParts?: boolean } = {}) {
    this.maxPacketLength = options.maxPacketLength ?? DEFAULT_MAX_PACKET_LENGTH;
    this.streamParts = options.streamParts ?? false;
  }

  /** Bytes held for a packet not yet complete. */
  get bufferedBytes(): number {
    return this.buffered;
  }

  /**
   * Adds a chunk and calls `onPacket` for every packet it completes. Throws a ProtocolError or FrameTooLargeError
   * on the first malformed packet; the decoder is then failed for good (the connection must close).
   */
  push(chunk: Buffer, onPacket: (packet: Packet) => void): void {
    if (this.failure) throw this.failure;
    if (chunk.length > 0) {
      this.chunks.push(chunk);
      this.buffered += chunk.length;
    }
    try {
      for (;;) {
        let h = this.header;
        if (h === null) {
          if (this.buffered < HEADER_LENGTH) return;
          const raw = this.take(HEADER_LENGTH);
          const length = raw.readUInt32BE(10);
          checkHeader(raw[0]!, raw[1]!, length, this.maxPacketLength);
          h = this.header = { type: raw[1]!, id: raw.readBigUInt64BE(2), length };
        }
        if (this.streamParts && h.type === PacketType.Stream && h.length > 8) {
          if (!this.streamPart(h, onPacket)) return;
          continue;
        }
        if (this.buffered < h.length) return;
        const body = this.take(h.length);
        this.header = null;
        onPacket(decodeBody(h.type, h.id, body));
      }
    } catch (err) {
      this.failure = err as Error;
      this.chunks = [];
      this.buffered = 0;
      throw err;
    }
  }

  /** Delivers what has arrived of a Stream packet's payload; true once the packet is complete. */
  private streamPart(h: Header, onPacket: (packet: Packet) => void): boolean {
    if (h.sessionId === undefined) {
      if (this.buffered < 8) return false;
      h.sessionId = this.take(8).readBigUInt64BE(0);
      h.remaining = h.length - 8;
    }
    while (h.remaining! > 0 && this.buffered > 0) {
      const first = this.chunks[0]!;
      const n = Math.min(h.remaining!, first.length - this.offset);
      const payload = this.take(n); // within the first chunk: a view, never a copy
      h.remaining! -= n;
      onPacket({ type: PacketType.Stream, id: h.id, sessionId: h.sessionId, payload });
    }
    if (h.remaining! > 0) return false;
    this.header = null;
    return true;
  }

  /** Takes n buffered bytes: a view when they sit in one chunk, one copy otherwise. */
  private take(n: number): Buffer {
    if (n === 0) return EMPTY;
    this.buffered -= n;
    const first = this.chunks[0]!;
    const available = first.length - this.offset;
    if (available >= n) {
      const out = first.subarray(this.offset, this.offset + n);
      this.offset += n;
      if (this.offset === first.length) {
        this.chunks.shift();
        this.offset = 0;
      }
      return out;
    }
    const out = Buffer.allocUnsafe(n);
    let written = 0;
    while (written < n) {
      const c = this.chunks[0]!;
      const count = Math.min(c.length - this.offset, n - written);
      c.copy(out, written, this.offset, this.offset + count);
      written += count;
      this.offset += count;
      if (this.offset === c.length) {
        this.chunks.shift();
        this.offset = 0;
      }
    }
    return out;
  }
}
