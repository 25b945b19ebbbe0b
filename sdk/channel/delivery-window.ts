/**
 * Remembers the last `size` message PacketIDs received from one ClientID, across its connections, so that a
 * message replayed after a reconnect (same PacketID) is acknowledged again but delivered to the application once.
 */
export class DeliveryWindow {
  private readonly entries = new Map<
    bigint,
    { error: string | undefined; settled: boolean; ackers: Ack[] | undefined }
  >();

  constructor(readonly size = 4096) {}

  /**
   * True when `id` is new (deliver it). For a duplicate, `ack` is called with the original's outcome, now if the
   * application already answered it, or when it does.
   */
  admit(id: bigint, ack: Ack): boolean {
    const e = this.entries.get(id);
    if (!e) {
      this.entries.set(id, { error: undefined, settled: false, ackers: undefined });
      if (this.entries.size > this.size) this.entries.delete(this.entries.keys().next().value as bigint);
      return true;
    }
    if (e.settled) ack(e.error);
    else (e.ackers ??= []).push(ack);
    return false;
  }

  /** The application answered message `id`: answer its duplicates the same way. */
  settle(id: bigint, error: string | undefined): void {
    const e = this.entries.get(id);
    if (!e || e.settled) return;
    e.settled = true;
    e.error = error;
    const ackers = e.ackers;
    e.ackers = undefined;
    if (ackers) for (const ack of ackers) ack(error);
  }
}

type Ack = (error: string | undefined) => void;
