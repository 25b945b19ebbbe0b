/**
 * Who a connecting End is, on the inbound side: the name it announced, the ClientID it gets, and whether it may
 * take that name. The records themselves live in ../policy/identities.ts (the hook runner reads them).
 */
import { randomInt } from 'node:crypto';
import type { End } from '../../sdk/index.js';
import type { InboundConfig } from '../config/schema.js';
import type { Identities } from '../policy/identities.js';

/** Reads the name a client announced in its meta ({"name": ...}); other metas have none. */
export function announcedName(meta: Buffer): string | undefined {
  try {
    const v = JSON.parse(meta.toString('utf8')) as { name?: unknown };
    return typeof v?.name === 'string' ? v.name : undefined;
  } catch {
    return undefined;
  }
}

/** A ClientID shaped like Go's (seconds << 32 | 32 random bits) that no connected End holds. */
export function freshClientId(identities: Identities): bigint {
  for (;;) {
    const id = (BigInt(Math.floor(Date.now() / 1000)) << 32n) | BigInt(randomInt(2, 0xffff_ffff));
    if (!identities.has(String(id))) return id;
  }
}

/**
 * Why an End may not take the name it announced: names are what reverse tunnels route by, so a name held by a
 * connected End is not given to a second one (it would receive the first one's traffic). A name under
 * `inbound.names` is held only by the ClientIDs listed there (several of them at once); a name a plugin assigned
 * with allow({ name }) is the plugin's decision and always taken.
 */
export function nameRefusal(
  names: InboundConfig['names'],
  identities: Identities,
  name: string,
  clientId: string,
  byPlugin: boolean,
): string | undefined {
  // Own keys only: an End announcing "constructor" or "toString" asks for a name, not a prototype member.
  const reserved = Object.hasOwn(names, name) ? names[name] : undefined;
  if (reserved) {
    return reserved.clientIds.includes(clientId)
      ? undefined
      : `name "${name}" is reserved for other ClientIDs (inbound.names)`;
  }
  if (byPlugin) return undefined;
  for (const other of identities.values()) {
    if (other.name !== name || other.clientId === clientId) continue;
    const end = other.owner as End | undefined;
    // A record still being set up (its End not accepted yet) holds the name too: two at once cannot both win.
    if (end?.state !== 'closed') return `name "${name}" is held by a connected client`;
  }
  return undefined;
}
