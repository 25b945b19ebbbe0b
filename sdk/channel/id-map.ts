/**
 * A map from PacketIDs to what waits for their answer, for the per-call churn of RPC and publish (an entry set and
 * deleted per call). A Map under that churn rehashes every few dozen entries, and V8 links each old hash table to
 * its successor (for live iterators): once one table has been promoted to the old generation, the chain of its
 * successors, and every entry they held, survives each minor GC until a major one. At 64 calls in flight that was
 * ~0.8 MB promoted per scavenge in an RPC client (`node --trace-gc-nvp`, issue 14 round 4). Here entries live in an
 * object's integer-keyed elements under the ID's low 32 bits (the counter half of a geminio ID), whose dictionary
 * has no such links; an ID whose low half is already taken by another goes to a small Map beside it.
 */
export class IdMap<V> {
  private byLow: Record<number, { id: bigint; value: V }> = Object.create(null);
  private readonly others = new Map<bigint, V>();
  private count = 0;
  private deletes = 0;

  get size(): number {
    return this.count;
  }

  get(id: bigint): V | undefined {
    const e = this.byLow[low(id)];
    if (e !== undefined && e.id === id) return e.value;
    return this.others.size === 0 ? undefined : this.others.get(id);
  }

  has(id: bigint): boolean {
    return this.get(id) !== undefined;
  }

  set(id: bigint, value: V): void {
    const k = low(id);
    const e = this.byLow[k];
    if (e === undefined) {
      if (this.others.size !== 0 && this.others.has(id)) {
        this.others.set(id, value); // it stays where it went when its slot was taken
        return;
      }
      this.byLow[k] = { id, value };
      this.count++;
    } else if (e.id === id) {
      e.value = value;
    } else {
      if (!this.others.has(id)) this.count++;
      this.others.set(id, value);
    }
  }

  delete(id: bigint): boolean {
    const k = low(id);
    const e = this.byLow[k];
    if (e !== undefined && e.id === id) {
      delete this.byLow[k];
      this.count--;
      // Now and then, when empty, a fresh dictionary instead of one with many deleted entries.
      if (++this.deletes >= 1024 && this.count === 0) {
        this.byLow = Object.create(null);
        this.deletes = 0;
      }
      return true;
    }
    if (this.others.delete(id)) {
      this.count--;
      return true;
    }
    return false;
  }

  keys(): bigint[] {
    const out: bigint[] = [];
    for (const k in this.byLow) out.push(this.byLow[k as unknown as number]!.id);
    for (const id of this.others.keys()) out.push(id);
    return out;
  }

  /** In ascending order of the IDs' low halves (publish order until the counter wraps), then the collisions. */
  values(): V[] {
    const out: V[] = [];
    for (const k in this.byLow) out.push(this.byLow[k as unknown as number]!.value);
    for (const v of this.others.values()) out.push(v);
    return out;
  }
}

function low(id: bigint): number {
  return Number(BigInt.asUintN(32, id));
}
