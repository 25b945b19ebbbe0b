/** Counts work in flight (requests, TCP connections, calls) so a graceful shutdown knows when it may stop. */
export class Inflight {
  private count = 0;
  private waiters: Array<() => void> = [];
  /** Units of work begun since the process started (for telling a busy period from an idle one). */
  started = 0;

  /** Marks one unit of work begun; call the returned function once when it ends (extra calls are ignored). */
  begin(): () => void {
    this.count++;
    this.started++;
    let done = false;
    return () => {
      if (done) return;
      done = true;
      this.count--;
      if (this.count === 0) for (const w of this.waiters.splice(0)) w();
    };
  }

  /** Marks one unit of work begun, for a caller that ends it exactly once with leave() (no closure per unit). */
  enter(): void {
    this.count++;
    this.started++;
  }

  /** Marks one unit of work begun with enter() ended. */
  leave(): void {
    this.count--;
    if (this.count === 0) for (const w of this.waiters.splice(0)) w();
  }

  get size(): number {
    return this.count;
  }

  /** Resolves true when nothing is in flight, or false once `timeoutMs` passed first. */
  idle(timeoutMs: number): Promise<boolean> {
    if (this.count === 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== wake);
        resolve(false);
      }, timeoutMs);
      const wake = () => {
        clearTimeout(timer);
        resolve(true);
      };
      this.waiters.push(wake);
    });
  }
}
