import type { EndLimits } from '../config.js';

/**
 * What RPC and messaging need from the stream they run on: its identity, a way to send frames, fresh packet IDs
 * and read-side backpressure. Nothing else, so they test without a socket.
 */
export interface StreamPort {
  readonly streamId: bigint;
  readonly clientId: bigint;
  readonly limits: EndLimits;
  /** The peer understands RequestCancel (negotiated; never a Go peer). */
  readonly canCancel: boolean;
  /** Queues one encoded frame; returns false once the connection is closed. */
  send(frame: Buffer): boolean;
  nextId(): bigint;
  pauseReading(by: unknown): void;
  resumeReading(by: unknown): void;
}
