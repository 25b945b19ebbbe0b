/**
 * A raw geminio peer for tests: a socket, the frame decoder and a way to wait for packets. Frames are written by
 * hand (encodePacket or bytes), so a test can be any peer, hostile ones included.
 */
import net from 'node:net';
import { FrameDecoder, type Packet } from '../../sdk/frame/index.js';

export class RawPeer {
  readonly packets: Packet[] = [];
  decodeError: unknown;
  ended = false;
  closed = false;
  readonly closedPromise: Promise<void>;
  private readonly decoder = new FrameDecoder();
  private readonly taken = new Set<number>();
  private listeners = new Set<() => void>();
  /** Called for each packet as it arrives (auto-answers). */
  onPacket: (p: Packet) => void = () => {};

  constructor(readonly socket: net.Socket) {
    socket.on('data', (chunk: Buffer) => {
      try {
        this.decoder.push(chunk, (p) => {
          this.packets.push(p);
          this.onPacket(p);
        });
      } catch (err) {
        this.decodeError = err;
      }
      this.notify();
    });
    socket.on('error', () => {}); // a reset by the server is a legitimate way to drop us
    socket.on('end', () => {
      this.ended = true;
      this.notify();
    });
    this.closedPromise = new Promise((resolve) =>
      socket.once('close', () => {
        this.closed = true;
        this.notify();
        resolve();
      }),
    );
  }

  static connect(port: number): Promise<RawPeer> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host: '127.0.0.1', port }, () => {
        socket.off('error', reject);
        resolve(new RawPeer(socket));
      });
      socket.once('error', reject);
    });
  }

  send(...frames: Buffer[]): void {
    this.socket.write(Buffer.concat(frames));
  }

  /** Resolves with the first packet not yet taken that matches; rejects after `timeout` ms or on close. */
  next(match: (p: Packet) => boolean, timeout = 3000): Promise<Packet> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const i = this.packets.findIndex((p, idx) => !this.taken.has(idx) && match(p));
        if (i >= 0) {
          this.taken.add(i);
          done();
          resolve(this.packets[i]!);
        } else if (this.closed) {
          done();
          reject(new Error('socket closed before the packet arrived'));
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`no matching packet within ${timeout} ms`));
      }, timeout);
      const done = () => {
        clearTimeout(timer);
        this.listeners.delete(check);
      };
      this.listeners.add(check);
      check();
    });
  }

  /** Resolves once the other side has closed or ended the socket; rejects after `timeout` ms. */
  async waitClosedByPeer(timeout = 3000): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      const check = () => {
        if (this.ended || this.closed) {
          clearTimeout(timer);
          this.listeners.delete(check);
          resolve();
        }
      };
      const timer = setTimeout(() => {
        this.listeners.delete(check);
        reject(new Error(`socket still open after ${timeout} ms`));
      }, timeout);
      this.listeners.add(check);
      check();
    });
  }

  destroy(): void {
    this.socket.destroy();
  }

  private notify(): void {
    for (const l of [...this.listeners]) l();
  }
}

/** A raw TCP client socket to a loopback port; resolves once connected. */
export function rawSocket(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port }, () => resolve(s));
    s.once('error', reject);
  });
}
