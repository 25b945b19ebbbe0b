/**
 * Every wire constant of the geminio protocol in one place. See docs/PROTOCOL.md for the normative description.
 */

/** The only version byte ever written. The Go library never checks it; we reject anything else. */
export const VERSION = 0x01;

/** Header: version(1) type(1) packetId(8, BE) bodyLength(4, BE). */
export const HEADER_LENGTH = 14;

/** Packet type codes (second header byte). */
export const PacketType = {
  Conn: 0x01,
  ConnAck: 0x02,
  DisConn: 0x11,
  DisConnAck: 0x12,
  Heartbeat: 0x21,
  HeartbeatAck: 0x22,
  Session: 0x31,
  SessionAck: 0x32,
  Dismiss: 0x41,
  DismissAck: 0x42,
  Message: 0x51,
  MessageAck: 0x52,
  Stream: 0x61,
  Request: 0x71,
  Response: 0x72,
  RequestCancel: 0x73,
  Register: 0x81,
  RegisterAck: 0x82,
  /**
   * geminio-node extension (never sent to a peer that did not negotiate it): credit for a stream's receive
   * window. Body: streamId(8) increment(4).
   */
  WindowUpdate: 0x63,
} as const;
export type PacketType = (typeof PacketType)[keyof typeof PacketType];

/** Human-readable names, for errors and logs. */
export const packetTypeName: Readonly<Record<number, string>> = Object.fromEntries(
  Object.entries(PacketType).map(([name, code]) => [code, name]),
);

/**
 * The fixed part of each body: a shorter body is a protocol error (the Go decoder would panic or underflow).
 * `exact` types carry no JSON and must have exactly this length (Go reads no body for DisConn and heartbeats, so
 * any other length would desynchronise it).
 */
export const fixedBodyLength: Readonly<Record<number, { min: number; exact: boolean }>> = {
  [PacketType.Conn]: { min: 10, exact: false },
  [PacketType.ConnAck]: { min: 9, exact: false },
  [PacketType.DisConn]: { min: 0, exact: true },
  [PacketType.DisConnAck]: { min: 1, exact: false },
  [PacketType.Heartbeat]: { min: 0, exact: true },
  [PacketType.HeartbeatAck]: { min: 0, exact: true },
  [PacketType.Session]: { min: 10, exact: false },
  [PacketType.SessionAck]: { min: 18, exact: false },
  [PacketType.Dismiss]: { min: 8, exact: false },
  [PacketType.DismissAck]: { min: 8, exact: false },
  [PacketType.Message]: { min: 8, exact: false },
  [PacketType.MessageAck]: { min: 8, exact: false },
  [PacketType.Stream]: { min: 8, exact: false },
  [PacketType.Request]: { min: 8, exact: false },
  [PacketType.Response]: { min: 8, exact: false },
  [PacketType.RequestCancel]: { min: 10, exact: true },
  [PacketType.Register]: { min: 8, exact: false },
  [PacketType.RegisterAck]: { min: 8, exact: false },
  [PacketType.WindowUpdate]: { min: 12, exact: true },
};

/**
 * Capability bits a geminio-node client sets in the Conn packet's reserved byte (body offset 1), which the Go
 * library writes as zero and never reads. A geminio-node server that supports them answers with an `ext` key in
 * the ConnAck JSON (Go ignores unknown keys, and never sees it: a Go client never asks).
 */
export const Capability = {
  /** Per-stream windows with WindowUpdate credit. */
  FlowControl: 0x01,
  /** Understands RequestCancel (0x73). */
  RequestCancel: 0x02,
} as const;

/** The receive window every stream starts with under the flow-control extension (both directions). */
export const EXTENSION_INITIAL_WINDOW = 256 * 1024;

/** Conn flags byte (body offset 0). Bits 6-7 are unused by Go. */
export const ConnFlag = {
  Retain: 0x01,
  Clear: 0x02,
  PacketIdAcquire: 0x04,
  /** The client asks the server to decide its ClientID. The Go client always sets it. */
  ClientIdAcquire: 0x08,
  /** Bits 4-5: heartbeat interval code, interval = 5 s * 4^code. */
  HeartbeatMask: 0x30,
  HeartbeatShift: 4,
} as const;

/** Heartbeat intervals (ms) that the 2-bit code can express, indexed by code. */
export const HEARTBEAT_INTERVALS_MS = [5_000, 20_000, 80_000, 320_000] as const;

/** Session flags byte (body offset 1). */
export const SessionFlag = {
  /** The receiver chooses the stream ID (a client opening a stream sets it). */
  SessionIdAcquire: 0x10,
} as const;

export const RetCode = { OK: 0x00, ERR: 0x01 } as const;

/** RequestCancel reasons. */
export const CancelType = { Canceled: 1, DeadlineExceeded: 2 } as const;

/** The default stream: it exists from the handshake on, is never negotiated, and is the End itself. */
export const DEFAULT_STREAM_ID = 1n;

/** Go's zero time.Time, written for unset deadlines. */
export const GO_ZERO_TIME = '0001-01-01T00:00:00Z';

export const UINT64_MAX = (1n << 64n) - 1n;
