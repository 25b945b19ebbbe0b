/**
 * `token`: an End must present a token in its connection meta (`{"name": ..., "token": "..."}`). Either a shared
 * secret (`mode: shared`) or a signed token (`mode: hmac`, the default) whose subject becomes the End's name and
 * whose optional `cid` its ClientID. Up to two keys are active at once, for rotation; each key may expire.
 * Signed tokens expire too: at connect, and for the End's later streams, requests, calls and messages.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { allow, definePlugin, deny, type EndIdentity, type HookResult } from '../index.js';
import { matchesSharedSecret, verifyToken } from './format.js';

export interface TokenKey {
  /** The secret itself; prefer secretFile or env in production. */
  secret?: string;
  /** A file holding the secret (trailing whitespace trimmed), relative to the config file. */
  secretFile?: string;
  /** An environment variable holding the secret. */
  env?: string;
  /** After this instant (ISO 8601) the key is no longer accepted. */
  notAfter?: string;
}

export interface TokenOptions {
  /** `hmac` (default): signed tokens with claims; `shared`: the token is one of the keys. */
  mode?: 'hmac' | 'shared';
  /** One or two active keys (two while rotating): secrets as strings, or TokenKey objects. */
  keys: Array<string | TokenKey>;
  /** Clock skew tolerated on expiry, in seconds. Default 30. */
  clockSkewSeconds?: number;
}

interface Key {
  secret: Buffer;
  notAfter: number;
}

interface State {
  mode: 'hmac' | 'shared';
  keys: Key[];
  skew: number;
  /** Token expiry (ms) by ClientID, to refuse an End's work once its token expired. Bounded. */
  expiries: Map<string, number>;
  now: () => number;
}

const MAX_TRACKED = 100_000;

function readKey(k: string | TokenKey, i: number, configDir: string): Key {
  const o: TokenKey = typeof k === 'string' ? { secret: k } : k;
  const sources = [o.secret, o.secretFile, o.env].filter((s) => s !== undefined).length;
  if (sources !== 1) throw new Error(`keys[${i}]: exactly one of secret, secretFile or env`);
  let secret = o.secret;
  if (o.secretFile !== undefined)
    secret = readFileSync(path.resolve(configDir, o.secretFile), 'utf8').trimEnd();
  if (o.env !== undefined) secret = process.env[o.env];
  if (typeof secret !== 'string' || Buffer.byteLength(secret) < 16) {
    throw new Error(`keys[${i}]: the secret must be at least 16 bytes`);
  }
  const notAfter = o.notAfter === undefined ? Number.POSITIVE_INFINITY : Date.parse(o.notAfter);
  if (Number.isNaN(notAfter)) throw new Error(`keys[${i}]: notAfter is not a date: ${o.notAfter}`);
  return { secret: Buffer.from(secret), notAfter };
}

function expired(s: State, clientId: string): HookResult {
  const exp = s.expiries.get(clientId);
  if (exp !== undefined && s.now() > exp) return deny('token expired');
  return allow();
}

const later = (facts: EndIdentity, s: State) => expired(s, facts.clientId);

export default definePlugin<TokenOptions, State>({
  name: 'token',
  setup(options, context) {
    const mode = options.mode ?? 'hmac';
    if (mode !== 'hmac' && mode !== 'shared')
      throw new Error(`mode must be hmac or shared, got ${String(mode)}`);
    if (!Array.isArray(options.keys) || options.keys.length < 1 || options.keys.length > 2) {
      throw new Error('keys must list one or two keys (two while rotating)');
    }
    const keys = options.keys.map((k, i) => readKey(k, i, context.configDir));
    const skew = options.clockSkewSeconds ?? 30;
    return { mode, keys, skew, expiries: new Map(), now: Date.now };
  },
  hooks: {
    onConnect(facts, s) {
      const token = facts.meta.token;
      if (typeof token !== 'string' || token === '') return deny('no token in the connection meta');
      const now = s.now();
      const active = s.keys.filter((k) => now <= k.notAfter).map((k) => k.secret);
      if (s.mode === 'shared') {
        return matchesSharedSecret(token, active) ? allow() : deny('invalid token');
      }
      const result = verifyToken(token, active, Math.floor(now / 1000), s.skew);
      if ('error' in result) return deny(result.error);
      const { claims } = result;
      const clientId = claims.cid ?? facts.clientId;
      if (s.expiries.size >= MAX_TRACKED) s.expiries.delete(s.expiries.keys().next().value as string);
      s.expiries.set(clientId, (claims.exp + s.skew) * 1000);
      return allow({ name: claims.sub, ...(claims.cid ? { clientId: claims.cid } : {}) });
    },
    onStream: later,
    onRequest: later,
    onRpc: later,
    onMessage: later,
  },
});
