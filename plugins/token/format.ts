/**
 * The signed token format of the `token` plugin: `gmo1.<payload>.<signature>`, where payload is the base64url JSON
 * of the claims and signature the base64url HMAC-SHA256 of `gmo1.<payload>` under a shared key. Pure functions of
 * node:crypto, so a service that mints tokens needs nothing else.
 */
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';

const PREFIX = 'gmo1';

/** What a signed token asserts. */
export interface TokenClaims {
  /** The subject: the name the End gets (what later hooks and reverse tunnels see). */
  sub: string;
  /** Expiry, in seconds since the epoch. */
  exp: number;
  /** Optional: the ClientID the End gets (decimal), so a client keeps it across reconnects. */
  cid?: string;
}

/** Signs `claims` with `key` (a shared secret of at least 16 bytes). */
export function signToken(claims: TokenClaims, key: string | Buffer): string {
  const payload = Buffer.from(JSON.stringify(claims)).toString('base64url');
  const signature = createHmac('sha256', key).update(`${PREFIX}.${payload}`).digest('base64url');
  return `${PREFIX}.${payload}.${signature}`;
}

/**
 * Checks a signed token against the active keys (each compared in constant time) and its expiry. Returns the
 * claims, or why the token is refused.
 */
export function verifyToken(
  token: string,
  keys: readonly Buffer[],
  nowSeconds: number,
  skewSeconds = 0,
): { claims: TokenClaims } | { error: string } {
  const parts = token.split('.');
  if (parts.length !== 3 || parts[0] !== PREFIX) return { error: 'malformed token' };
  const [, payload = '', signature = ''] = parts;
  const given = Buffer.from(signature, 'base64url');
  let valid = false;
  for (const key of keys) {
    const expected = createHmac('sha256', key).update(`${PREFIX}.${payload}`).digest();
    // Every key is tried (no early exit), so the time taken says nothing about which key matched.
    if (given.length === expected.length && timingSafeEqual(given, expected)) valid = true;
  }
  if (!valid) return { error: 'bad token signature' };
  let claims: TokenClaims;
  try {
    claims = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as TokenClaims;
  } catch {
    return { error: 'malformed token claims' };
  }
  if (typeof claims !== 'object' || claims === null || typeof claims.sub !== 'string' || claims.sub === '') {
    return { error: 'token has no subject' };
  }
  if (typeof claims.exp !== 'number' || !Number.isFinite(claims.exp)) return { error: 'token has no expiry' };
  if (nowSeconds > claims.exp + skewSeconds) return { error: 'token expired' };
  if (claims.cid !== undefined && (typeof claims.cid !== 'string' || !/^[1-9]\d{0,19}$/.test(claims.cid))) {
    return { error: 'token has a malformed cid' };
  }
  return { claims };
}

/** Compares a presented shared secret with the active keys in constant time, whatever their lengths. */
export function matchesSharedSecret(presented: string, keys: readonly Buffer[]): boolean {
  const digest = createHash('sha256').update(presented).digest();
  let valid = false;
  for (const key of keys) {
    if (timingSafeEqual(digest, createHash('sha256').update(key).digest())) valid = true;
  }
  return valid;
}
