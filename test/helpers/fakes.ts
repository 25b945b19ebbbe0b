/**
 * Fakes for unit tests of one SDK layer: no sockets, no real time (use them with vitest fake timers).
 */
import { Duplex } from 'node:stream';
import type { StreamPort } from '../../sdk/channel/port.js';
import { type EndLimits, resolveLimits } from '../../sdk/config.js';
import { encodePacket, FrameDecoder, type Packet } from '../../sdk/frame/index.js';

/** Decodes one encoded frame (what a layer sent). */
export function decodeFrame(frame: Buffer): Packet {
  const out: Packet[] = [];
  new FrameDecoder().push(frame, (p) => out.push(p));
  if (out.length !== 1) throw new Error(`expected one frame, got ${out.length}`);
  return out[0]!;
}

/** A StreamPort that records the packets RPC or messaging send. */
export class FakePort implements StreamPort {
  readonly sent: Packet[] = [];
  readonly paused = new Set<unknown>();
  private id = 100n;
  streamId = 1n;
  clientId = 7n;
  canCancel = true;
  limits: EndLimits;

  constructor(limits: Partial<EndLimits> = {}) {
    this.limits = resolveLimits(limits);
  }

  send(frame: Buffer): boolean {
    this.sent.push(decodeFrame(frame));
    return true;
  }

  nextId(): bigint {
    this.id += 1n;
    return this.id;
  }

  pauseReading(by: unknown): void {
    this.paused.add(by);
  }

  resumeReading(by: unknown): void {
    this.paused.delete(by);
  }
}

/**
 * A transport for a Connection: what the connection writes is decoded into `sent`; `deliver()` hands it a packet
 * as if the peer had sent it. Writes are synchronous (corking aside, which a fake setImmediate releases).
 */
export class FakeTransport extends Duplex {
  readonly sent: Packet[] = [];
  private readonly decoder = new FrameDecoder({ streamParts: false });
  ended = false;

  override _read(): void {}

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.decoder.push(chunk, (p) => this.sent.push(p));
    cb();
  }

  override _final(cb: (err?: Error | null) => void): void {
    this.ended = true;
    cb();
  }

  deliver(packet: Packet): void {
    this.emit('data', encodePacket(packet));
  }

  /** The packets sent so far, by type name, for compact assertions. */
  types(): number[] {
    return this.sent.map((p) => p.type);
  }
}
