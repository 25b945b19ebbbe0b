/**
 * Declares the peer dead when nothing at all has arrived for `timeout` ms. Any packet counts, not only
 * HeartbeatAcks, so a long transfer that delays an ack behind data is not mistaken for a dead peer.
 * Checking a counter a few times per timeout keeps per-packet work to one increment.
 *
 * Time this process could not run does not count against the peer: when it stalls (a starved CPU, a long GC
 * pause), it reads nothing, and the peer (or, in one process, both ends) could not be heard. So a check that runs
 * late moves the deadline by its lateness, and a check that finds the timeout passed gives its verdict only after
 * the sockets have been read once more (setImmediate runs after the event loop's poll phase): the overdue timer
 * runs before the socket holding the peer's packets is read.
 */
export class Liveness {
  private seen = 0;
  private lastCount = 0;
  private lastProgress = 0;
  private timeout = 0;
  private every = 0;
  private lastCheck = 0;
  private timer: NodeJS.Timeout | undefined;
  private verdict: NodeJS.Immediate | undefined;

  constructor(private readonly onDead: () => void) {}

  saw(): void {
    this.seen++;
  }

  start(timeout: number): void {
    this.timeout = timeout;
    this.every = Math.max(10, Math.floor(timeout / 4));
    this.lastProgress = Date.now();
    this.lastCheck = this.lastProgress;
    this.lastCount = this.seen;
    this.timer = setInterval(check, this.every, this);
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
    clearImmediate(this.verdict);
    this.verdict = undefined;
  }

  /** @internal */
  check(): void {
    const now = Date.now();
    const late = now - this.lastCheck - this.every;
    this.lastCheck = now;
    if (late > 0) this.lastProgress += late;
    if (this.progressed()) return;
    if (this.verdict === undefined && now - this.lastProgress >= this.timeout)
      this.verdict = setImmediate(decide, this);
  }

  /** @internal Runs after pending reads: dead only if still nothing arrived. */
  decide(): void {
    this.verdict = undefined;
    if (this.timer === undefined || this.progressed()) return;
    this.stop();
    this.onDead();
  }

  private progressed(): boolean {
    if (this.seen === this.lastCount) return false;
    this.lastCount = this.seen;
    this.lastProgress = Date.now();
    return true;
  }
}

function check(l: Liveness): void {
  l.check();
}

function decide(l: Liveness): void {
  l.decide();
}
