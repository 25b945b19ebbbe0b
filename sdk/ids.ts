import { randomInt } from 'node:crypto';

/**
 * IDs shaped like the Go library's: the high 32 bits are unix seconds at creation, the low 32 bits a counter that
 * starts at a random value and wraps without carrying. They are unique per factory, never 0 or 1, and larger than
 * 2^53, hence bigint.
 */
export class IdFactory {
  private counter: number;

  constructor() {
    this.counter = randomInt(0, 0xffff_ffff);
  }

  next(): bigint {
    this.counter = (this.counter + 1) >>> 0;
    const seconds = Math.floor(Date.now() / 1000);
    return (BigInt(seconds) << 32n) | BigInt(this.counter);
  }
}
