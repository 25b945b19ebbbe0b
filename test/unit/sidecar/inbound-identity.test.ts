// Who a connecting End is (sidecar/inbound/identity.ts): its announced name, a fresh ClientID no record holds,
// and whether it may take a name (reserved names, names held by a connected End, names a plugin assigned).
import { describe, expect, it } from 'vitest';
import { announcedName, freshClientId, nameRefusal } from '../../../sidecar/inbound/identity.js';
import { Identities } from '../../../sidecar/policy/identities.js';

describe('inbound identity', () => {
  it('reads the announced name from a JSON meta, and none from anything else', () => {
    expect(announcedName(Buffer.from('{"name":"edge-1"}'))).toBe('edge-1');
    for (const meta of ['{"name":3}', 'edge', '', 'null', '[]'])
      expect(announcedName(Buffer.from(meta))).toBeUndefined();
  });

  it('gives a Go-shaped ClientID (unix seconds in the high 32 bits) that no record holds', () => {
    const ids = new Identities();
    const before = BigInt(Math.floor(Date.now() / 1000));
    const id = freshClientId(ids);
    expect(id >> 32n >= before).toBe(true);
    expect(id & 0xffff_ffffn).toBeGreaterThanOrEqual(2n);
    ids.remember({ clientId: String(id), name: undefined });
    expect(freshClientId(ids)).not.toBe(id);
  });

  it('refuses a reserved name to other ClientIDs, and a held one to a second End', () => {
    const ids = new Identities();
    const names = { core: { clientIds: ['1', '2'] } };
    expect(nameRefusal(names, ids, 'core', '2', false)).toBeUndefined();
    expect(nameRefusal(names, ids, 'core', '3', true)).toMatch(/reserved for other ClientIDs/);
    ids.remember({ clientId: '10', name: 'edge' });
    // Held while being set up, and while its End is connected; free once it closed.
    expect(nameRefusal({}, ids, 'edge', '11', false)).toMatch(/held by a connected client/);
    expect(nameRefusal({}, ids, 'edge', '10', false)).toBeUndefined();
    expect(nameRefusal({}, ids, 'edge', '11', true)).toBeUndefined();
    const end = { state: 'connected' };
    ids.bind('10', end);
    expect(nameRefusal({}, ids, 'edge', '11', false)).toMatch(/held/);
    end.state = 'closed';
    expect(nameRefusal({}, ids, 'edge', '11', false)).toBeUndefined();
  });

  it('reads reserved names as own keys only: prototype member names are ordinary names', () => {
    const ids = new Identities();
    for (const name of ['constructor', 'toString', '__proto__', 'hasOwnProperty'])
      expect(nameRefusal({}, ids, name, '1', false)).toBeUndefined();
  });
});
