/**
 * The identity records of inbound Ends: the ClientID and name decided when each connected. Every later decision
 * about that End reads its record (./hooks.ts); the inbound listener writes them (../inbound/identity.ts). The
 * composition root makes one book and hands it to both.
 */

/** The identity of an inbound End, decided at connect. */
export interface Identity {
  clientId: string;
  name: string | undefined;
  /** The End holding it, once accepted (until then it is being set up). */
  owner?: object;
}

export class Identities {
  private readonly byClientId = new Map<string, Identity>();

  get(clientId: string): Identity | undefined {
    return this.byClientId.get(clientId);
  }

  has(clientId: string): boolean {
    return this.byClientId.has(clientId);
  }

  values(): IterableIterator<Identity> {
    return this.byClientId.values();
  }

  /**
   * Records the identity decided at connect. It is bound to the End once accepted (`bind`); a record whose End
   * never arrives (the handshake failed after the decision) is dropped after `unboundMs`.
   */
  remember(identity: Identity, unboundMs = 60_000): void {
    this.byClientId.set(identity.clientId, identity);
    setTimeout(() => {
      if (!identity.owner && this.byClientId.get(identity.clientId) === identity)
        this.byClientId.delete(identity.clientId);
    }, unboundMs).unref();
  }

  /** Binds the record of `clientId` to its accepted End; undefined when there is none. */
  bind(clientId: string, owner: object): Identity | undefined {
    const identity = this.byClientId.get(clientId);
    if (identity) identity.owner = owner;
    return identity;
  }

  /** Drops the record of `clientId` if `owner` still holds it (the End closed). */
  release(clientId: string, owner: object): void {
    if (this.byClientId.get(clientId)?.owner === owner) this.byClientId.delete(clientId);
  }
}
