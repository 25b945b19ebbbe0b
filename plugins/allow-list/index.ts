/**
 * `allow-list`: only what is listed gets through. Each list restricts one thing — ClientIDs and names at connect,
 * services for streams and requests, HTTP paths, RPC methods, message topics — and a list that is left out
 * restricts nothing. Patterns match the whole value; `*` matches any run of characters (including `/`).
 */
import { allow, definePlugin, deny } from '../index.js';

export interface AllowListOptions {
  /** ClientIDs (decimal) that may connect: the ClientID decided so far in the chain (see docs/PLUGINS.md). */
  clientIds?: string[];
  /** Names that may connect: the name decided so far (a verified one from token/mtls-identity, else announced). */
  names?: string[];
  /** Services that streams and HTTP requests may reach. */
  services?: string[];
  /** HTTP request paths (the query is ignored). */
  paths?: string[];
  /** HTTP methods (GET, POST, ...). */
  httpMethods?: string[];
  /** RPC methods that may be called. */
  rpcMethods?: string[];
  /** Message topics that may be published (a message without a topic matches ""). */
  topics?: string[];
}

type Matcher = (value: string | undefined) => boolean;

/** Compiles glob patterns (`*` only) into one matcher; undefined when the list is absent. */
export function compilePatterns(patterns: unknown, key: string): Matcher | undefined {
  if (patterns === undefined) return undefined;
  if (!Array.isArray(patterns) || !patterns.every((p) => typeof p === 'string')) {
    throw new Error(`${key} must be a list of strings`);
  }
  const res = patterns.map((p: string) => new RegExp(`^${p.split('*').map(escapeRegExp).join('.*')}$`, 's'));
  return (value) => value !== undefined && res.some((re) => re.test(value));
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

interface State {
  clientIds?: Matcher;
  names?: Matcher;
  services?: Matcher;
  paths?: Matcher;
  httpMethods?: Matcher;
  rpcMethods?: Matcher;
  topics?: Matcher;
}

const KEYS = ['clientIds', 'names', 'services', 'paths', 'httpMethods', 'rpcMethods', 'topics'] as const;

export default definePlugin<AllowListOptions, State>({
  name: 'allow-list',
  setup(options) {
    const state: State = {};
    for (const k of Object.keys(options ?? {})) {
      if (!(KEYS as readonly string[]).includes(k))
        throw new Error(`unknown option "${k}" (one of ${KEYS.join(', ')})`);
    }
    for (const k of KEYS) {
      const m = compilePatterns(options?.[k], k);
      if (m) state[k] = m;
    }
    return state;
  },
  hooks: {
    onConnect(facts, s) {
      if (s.clientIds && !s.clientIds(facts.clientId))
        return deny(`ClientID ${facts.clientId} is not allowed`);
      if (s.names && !s.names(facts.name))
        return deny(`name ${JSON.stringify(facts.name ?? null)} is not allowed`);
      return allow();
    },
    onStream(facts, s) {
      if (s.services && !s.services(facts.service)) return deny(`service "${facts.service}" is not allowed`);
      return allow();
    },
    onRequest(facts, s) {
      if (s.services && !s.services(facts.service)) return deny(`service "${facts.service}" is not allowed`);
      if (s.httpMethods && !s.httpMethods(facts.method)) return deny(`method ${facts.method} is not allowed`);
      const pathOnly = facts.path.split('?')[0];
      if (s.paths && !s.paths(pathOnly)) return deny(`path ${pathOnly} is not allowed`);
      return allow();
    },
    onRpc(facts, s) {
      if (s.rpcMethods && !s.rpcMethods(facts.method)) return deny(`method "${facts.method}" is not allowed`);
      return allow();
    },
    onMessage(facts, s) {
      if (s.topics && !s.topics(facts.topic ?? ''))
        return deny(`topic "${facts.topic ?? ''}" is not allowed`);
      return allow();
    },
  },
});
