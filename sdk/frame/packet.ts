import type { PacketType } from './constants.js';

/** JSON part of Conn, ConnAck and DisConnAck. */
export interface ConnData {
  meta?: Buffer | undefined;
  error?: string | undefined;
  /** geminio-node extension answer in ConnAck: the capabilities the server accepted. */
  ext?: ConnExtension | undefined;
}

/** The `ext` key of a ConnAck from a geminio-node server to a client that set capability bits. */
export interface ConnExtension {
  /** ConnAck: capability bits accepted (see Capability). */
  caps?: number | undefined;
  /**
   * ConnAck: a secret that lets this client take its ClientID back after a reconnect even while the server
   * still holds its old connection. Conn: that secret, presented again.
   */
  resume?: Buffer | undefined;
}

/** JSON part of Session, SessionAck, Dismiss and DismissAck. */
export interface SessionData {
  meta?: Buffer | undefined;
  error?: string | undefined;
  peer?: string | undefined;
}

/** JSON part of RegisterAck. */
export interface RegisterData {
  error?: string | undefined;
}

/** JSON part of Message, MessageAck, Request and Response. */
export interface MessageData {
  /** RPC method name (Request/Response); unused by messages. */
  key?: Buffer | undefined;
  value?: Buffer | undefined;
  topic?: string | undefined;
  custom?: Buffer | undefined;
  error?: string | undefined;
  /** Nanoseconds; Go never writes it. */
  timeout?: number | undefined;
  /** Absolute deadline (ms since epoch) in the sender's clock, or undefined when unset (Go's zero time). */
  deadline?: number | undefined;
  /** The sender's context deadline, as above. */
  contextDeadline?: number | undefined;
}

interface Base<T extends PacketType> {
  type: T;
  /** PacketID: a fresh ID for requests, the request's ID for acks and responses. */
  id: bigint;
}

export interface ConnPacket extends Base<typeof PacketType.Conn> {
  flags: number;
  /** The reserved byte: geminio-node capability bits (0 from Go). */
  capabilities?: number;
  clientId: bigint;
  data: ConnData;
}
export interface ConnAckPacket extends Base<typeof PacketType.ConnAck> {
  retCode: number;
  clientId: bigint;
  data: ConnData;
}
export interface DisConnAckPacket extends Base<typeof PacketType.DisConnAck> {
  retCode: number;
  data: ConnData;
}
export type EmptyPacket = Base<
  typeof PacketType.DisConn | typeof PacketType.Heartbeat | typeof PacketType.HeartbeatAck
>;
export interface SessionPacket extends Base<typeof PacketType.Session> {
  priority: number;
  flags: number;
  negotiateId: bigint;
  data: SessionData;
}
export interface SessionAckPacket extends Base<typeof PacketType.SessionAck> {
  negotiateId: bigint;
  sessionId: bigint;
  data: SessionData;
}
export interface DismissPacket extends Base<typeof PacketType.Dismiss | typeof PacketType.DismissAck> {
  sessionId: bigint;
  data: SessionData;
}
export interface MessagePacket
  extends Base<
    | typeof PacketType.Message
    | typeof PacketType.MessageAck
    | typeof PacketType.Request
    | typeof PacketType.Response
  > {
  sessionId: bigint;
  data: MessageData;
}
export interface StreamPacket extends Base<typeof PacketType.Stream> {
  sessionId: bigint;
  payload: Buffer;
}
export interface RequestCancelPacket extends Base<typeof PacketType.RequestCancel> {
  sessionId: bigint;
  cancelType: number;
}
export interface RegisterPacket extends Base<typeof PacketType.Register> {
  sessionId: bigint;
  /** Raw method name bytes, as on the wire. */
  method: Buffer;
}
export interface RegisterAckPacket extends Base<typeof PacketType.RegisterAck> {
  sessionId: bigint;
  data: RegisterData;
}
export interface WindowUpdatePacket extends Base<typeof PacketType.WindowUpdate> {
  sessionId: bigint;
  /** Bytes the receiver adds to the sender's window for this stream. */
  increment: number;
}

export type Packet =
  | ConnPacket
  | ConnAckPacket
  | DisConnAckPacket
  | EmptyPacket
  | SessionPacket
  | SessionAckPacket
  | DismissPacket
  | MessagePacket
  | StreamPacket
  | RequestCancelPacket
  | RegisterPacket
  | RegisterAckPacket
  | WindowUpdatePacket;

/** Packets that belong to one stream (everything after the handshake except the connection-level types). */
export type StreamScopedPacket =
  | DismissPacket
  | MessagePacket
  | StreamPacket
  | RequestCancelPacket
  | RegisterPacket
  | RegisterAckPacket
  | WindowUpdatePacket;
