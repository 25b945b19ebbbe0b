/** IdMap: the PacketID map of pending calls and publishes (issue 14, round 4), against a Map as the reference. */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { IdMap } from '../../../sdk/channel/id-map.js';

describe('IdMap', () => {
  it('keeps IDs whose low 32 bits collide apart', () => {
    const m = new IdMap<string>();
    const a = (1n << 32n) | 7n;
    const b = (2n << 32n) | 7n;
    m.set(a, 'a');
    m.set(b, 'b');
    expect(m.size).toBe(2);
    expect(m.get(a)).toBe('a');
    expect(m.get(b)).toBe('b');
    expect(m.delete(a)).toBe(true);
    expect(m.get(a)).toBeUndefined();
    expect(m.get(b)).toBe('b');
    expect(m.has(b)).toBe(true);
    expect(m.delete(a)).toBe(false);
    m.set(b, 'b2');
    expect(m.size).toBe(1);
    expect(m.keys()).toEqual([b]);
    expect(m.values()).toEqual(['b2']);
  });

  it('behaves as a Map for any sequence of set, get and delete', () => {
    const id = fc
      .tuple(fc.integer({ min: 0, max: 3 }), fc.integer({ min: 0, max: 5 }))
      .map(([hi, lo]) => (BigInt(hi) << 32n) | BigInt(lo));
    const op = fc.tuple(fc.constantFrom('set', 'get', 'delete'), id, fc.integer());
    fc.assert(
      fc.property(fc.array(op, { maxLength: 60 }), (ops) => {
        const m = new IdMap<number>();
        const ref = new Map<bigint, number>();
        for (const [what, k, v] of ops) {
          if (what === 'set') {
            m.set(k, v);
            ref.set(k, v);
          } else if (what === 'get') expect(m.get(k)).toBe(ref.get(k));
          else expect(m.delete(k)).toBe(ref.delete(k));
          expect(m.size).toBe(ref.size);
        }
        expect(new Set(m.keys())).toEqual(new Set(ref.keys()));
        expect(m.values().sort()).toEqual([...ref.values()].sort());
      }),
      { numRuns: 2000 },
    );
  });

  it('stays right across the churn of many calls (the dictionary renewed when empty)', () => {
    const m = new IdMap<number>();
    const base = 0x66543d2d_fffff000n; // the low half wraps through 2^32 on the way
    for (let i = 0; i < 5000; i++) {
      const id = base + BigInt(i);
      m.set(id, i);
      if (i >= 3) {
        const old = base + BigInt(i - 3);
        expect(m.get(old)).toBe(i - 3);
        expect(m.delete(old)).toBe(true);
      }
      expect(m.size).toBe(Math.min(i + 1, 3));
    }
    expect(m.keys().sort()).toEqual([base + 4997n, base + 4998n, base + 4999n].sort());
    for (const id of m.keys()) m.delete(id);
    expect(m.size).toBe(0);
    expect(m.values()).toEqual([]);
  });
});
