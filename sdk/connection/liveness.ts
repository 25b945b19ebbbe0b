/**
 * Declares the peer dead when nothing at all has arrived for `timeout` ms. Any packet counts, not only
 * HeartbeatAcks, so a long transfer that delays an ack behind data is not mistaken for a dead peer.
 * Checking a counter a few times per timeout keeps per-packet work to one increment.
 */
export class Liveness {
  private seen = 0;
  private lastCount = 0;
  private lastProgress = 0;
  private timeout = 0;
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly onDead: () => void) {}

  saw(): void {
    this.seen++;
  }

  start(timeout: number): void {
    this.timeout = timeout;
    this.lastProgress = Date.now();
    this.lastCount = this.seen;
    this.timer = setInterval(check, Math.max(10, Math.floor(timeout / 4)), this);
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  /** @internal */
  check(): void {
    const now = Date.now();
    if (this.seen !== this.lastCount) {
      this.lastCount = this.seen;
      this.lastProgress = now;
      return;
    }
    if (now - this.lastProgress >= this.timeout) {
      this.stop();
      this.onDead();
    }
  }
}

function check(l: Liveness): void {
  l.check();
}
