/**
 * The sidecar's authorization plugin API, published as `geminio/plugins`.
 *
 * A plugin module default-exports `definePlugin({ name, setup, hooks })`. The sidecar loads the plugins named in
 * its config, calls each one's `setup(options, context)` once per (re)load, and asks their hooks, in order, whether
 * an End may connect, open a stream, send an HTTP request, call a method or publish a message. The first deny wins.
 *
 * Hooks must answer with `allow()` or `deny(reason)`. Anything else — a throw, a rejection, a value that is not a
 * decision, no answer within the timeout — is a deny: the sidecar fails closed. Hook names are a closed set,
 * checked when the plugin loads. See docs/PLUGINS.md.
 */
import type { X509Certificate } from 'node:crypto';

export { signToken, type TokenClaims } from './token/format.js';

/** The hooks a plugin may define; any other key in `hooks` is refused when the plugin loads. */
export const HOOK_NAMES = ['onConnect', 'onStream', 'onRequest', 'onRpc', 'onMessage'] as const;
export type HookName = (typeof HOOK_NAMES)[number];

/** What every hook after onConnect sees about the End: the ClientID and name decided when it connected. */
export interface EndIdentity {
  /** The End's ClientID, in decimal (ClientIDs are 64-bit). */
  readonly clientId: string;
  /** The name decided at connect: a plugin's `allow({ name })`, else the name announced in the meta. */
  readonly name: string | undefined;
}

/** onConnect: a remote End finished the geminio handshake and waits for the ConnAck. */
export interface ConnectFacts extends EndIdentity {
  /**
   * The ClientID this End gets unless a plugin assigns another: a fresh one chosen by the sidecar, or the one an
   * earlier plugin in the chain assigned.
   */
  readonly clientId: string;
  /** The ClientID the client asked for, in decimal; never used unless a plugin returns it in allow({ clientId }). */
  readonly proposedClientId: string | undefined;
  /** The connection meta parsed as a JSON object (`{}` when it is not one). Sidecars send `{ name, token? }`. */
  readonly meta: Readonly<Record<string, unknown>>;
  readonly remoteAddress: string | undefined;
  /** The TLS client certificate, when the inbound listener uses TLS and the client sent one. */
  readonly peerCertificate: X509Certificate | undefined;
  /** True when TLS itself verified peerCertificate against the listener's CA (requestCert + rejectUnauthorized). */
  readonly peerVerified: boolean;
}

/** onStream: the End opened a stream to a service. */
export interface StreamFacts extends EndIdentity {
  readonly streamId: string;
  /** The raw stream meta (JSON `{"service", "proto"}` from sidecars). */
  readonly meta: string;
  readonly service: string;
  readonly direction: 'inbound';
}

/** onRequest: one HTTP request on a stream (every request of a keep-alive stream is asked). */
export interface RequestFacts extends EndIdentity {
  readonly streamId: string;
  readonly method: string;
  /** The request target as sent (path and query). */
  readonly path: string;
  /** Request headers, names in lower case. */
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
  readonly service: string;
}

/** onRpc: the End called a method the sidecar serves. */
export interface RpcFacts extends EndIdentity {
  readonly streamId: string;
  readonly method: string;
}

/** onMessage: the End published a message to this sidecar. */
export interface MessageFacts extends EndIdentity {
  readonly streamId: string;
  readonly topic: string | undefined;
}

export interface HookFactsByName {
  onConnect: ConnectFacts;
  onStream: StreamFacts;
  onRequest: RequestFacts;
  onRpc: RpcFacts;
  onMessage: MessageFacts;
}

/** Marks values made by allow() and deny(); registered globally so it survives two copies of this module. */
export const DECISION: unique symbol = Symbol.for('geminio.plugins.decision');

export interface AllowDecision {
  readonly [DECISION]: true;
  readonly allow: true;
  /** onConnect only: the ClientID to give the End (a decimal string). */
  readonly clientId?: string;
  /** onConnect only: the End's name for every later hook and for reverse tunnels. */
  readonly name?: string;
  /** onRequest only: headers to set on the forwarded request (they replace what the client sent). */
  readonly headers?: Readonly<Record<string, string>>;
}

export interface DenyDecision {
  readonly [DECISION]: true;
  readonly allow: false;
  readonly reason: string;
  /** The HTTP status for onRequest (400-599, default 403); other hooks ignore it. */
  readonly status?: number;
}

export type Decision = AllowDecision | DenyDecision;
export type HookResult = Decision | Promise<Decision>;

export interface AllowOptions {
  clientId?: string | bigint;
  name?: string;
  headers?: Record<string, string>;
}

/** Lets it through. `clientId` and `name` are for onConnect, `headers` for onRequest. */
export function allow(options: AllowOptions = {}): AllowDecision {
  const d: { -readonly [K in keyof AllowDecision]: AllowDecision[K] } = { [DECISION]: true, allow: true };
  if (options.clientId !== undefined) d.clientId = String(options.clientId);
  if (options.name !== undefined) d.name = options.name;
  if (options.headers !== undefined) d.headers = Object.freeze({ ...options.headers });
  return Object.freeze(d);
}

/** Refuses. `reason` goes to the log and to the client (keep secrets out of it). */
export function deny(reason: string, options: { status?: number } = {}): DenyDecision {
  const d: { -readonly [K in keyof DenyDecision]: DenyDecision[K] } = {
    [DECISION]: true,
    allow: false,
    reason: String(reason),
  };
  if (options.status !== undefined) d.status = options.status;
  return Object.freeze(d);
}

/** True for values made by allow() or deny() (of any copy of this module). */
export function isDecision(value: unknown): value is Decision {
  return typeof value === 'object' && value !== null && (value as Record<symbol, unknown>)[DECISION] === true;
}

/** A logger for plugins: pino-style, an object of fields first, then the message. */
export interface PluginLogger {
  debug(fields: object, message?: string): void;
  info(fields: object, message?: string): void;
  warn(fields: object, message?: string): void;
  error(fields: object, message?: string): void;
}

/** What setup() gets besides its options. */
export interface PluginContext {
  /** The plugin's name. */
  readonly name: string;
  /** The directory of the sidecar's config file: resolve files named in options against it. */
  readonly configDir: string;
  readonly logger: PluginLogger;
}

export type PluginHooks<S> = {
  [K in HookName]?: (facts: HookFactsByName[K], state: S) => HookResult;
};

/**
 * A plugin. `setup(options, context)` runs once per load (at start and on each reload) and returns the state every
 * hook receives as its second argument; without setup the hooks get the options. `close(state)` runs when a reload
 * replaces the plugin or the sidecar stops.
 */
export interface PluginDefinition<O = Record<string, unknown>, S = O> {
  readonly name: string;
  readonly setup?: (options: O, context: PluginContext) => S | Promise<S>;
  readonly hooks: PluginHooks<S>;
  readonly close?: (state: S) => void | Promise<void>;
}

const PLUGIN_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;
const KEYS = ['name', 'setup', 'hooks', 'close'];

/** A plugin definition that is not valid: an unknown hook, a hook that is not a function, a bad name. */
export class PluginDefinitionError extends Error {
  readonly code = 'GEMINIO_PLUGIN_ERR_DEFINITION';
}

/**
 * Checks a plugin definition (the sidecar checks every loaded module the same way, definePlugin or not) and
 * returns it frozen. Throws PluginDefinitionError naming the plugin and the offending hook.
 */
export function definePlugin<O = Record<string, unknown>, S = O>(
  definition: PluginDefinition<O, S>,
): PluginDefinition<O, S> {
  return validatePlugin(definition) as PluginDefinition<O, S>;
}

/** Validates an untyped plugin value; see definePlugin. */
export function validatePlugin(value: unknown, where = ''): PluginDefinition<unknown, unknown> {
  const at = where ? ` (${where})` : '';
  if (typeof value !== 'object' || value === null) {
    throw new PluginDefinitionError(
      `plugin${at}: expected an object { name, setup?, hooks }, got ${typeof value}`,
    );
  }
  const v = value as Record<string, unknown>;
  const name = v.name;
  if (typeof name !== 'string' || !PLUGIN_NAME.test(name)) {
    throw new PluginDefinitionError(
      `plugin${at}: name must be letters, digits, "_", "." or "-" (at most 63), got ${JSON.stringify(name)}`,
    );
  }
  const label = `plugin "${name}"${at}`;
  for (const k of Object.keys(v)) {
    if (!KEYS.includes(k))
      throw new PluginDefinitionError(`${label}: unknown key "${k}" (one of ${KEYS.join(', ')})`);
  }
  for (const k of ['setup', 'close'] as const) {
    if (v[k] !== undefined && typeof v[k] !== 'function') {
      throw new PluginDefinitionError(`${label}: ${k} must be a function, got ${typeof v[k]}`);
    }
  }
  const hooks = v.hooks;
  if (typeof hooks !== 'object' || hooks === null) {
    throw new PluginDefinitionError(`${label}: hooks must be an object of ${HOOK_NAMES.join(', ')}`);
  }
  const names = Object.keys(hooks);
  if (names.length === 0) throw new PluginDefinitionError(`${label}: defines no hooks`);
  for (const h of names) {
    if (!(HOOK_NAMES as readonly string[]).includes(h)) {
      throw new PluginDefinitionError(`${label}: unknown hook "${h}" (one of ${HOOK_NAMES.join(', ')})`);
    }
    const fn = (hooks as Record<string, unknown>)[h];
    if (typeof fn !== 'function') {
      throw new PluginDefinitionError(`${label}: hook "${h}" must be a function, got ${typeof fn}`);
    }
  }
  return Object.freeze({ ...v, hooks: Object.freeze({ ...hooks }) }) as PluginDefinition<unknown, unknown>;
}

const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const HEADER_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;
const MAX_CLIENT_ID = (1n << 64n) - 1n;

/**
 * Checks what a hook returned and normalizes it (header names in lower case). Returns an error text when the value
 * is not a valid decision for this hook; the sidecar denies in that case.
 */
export function checkDecision(hook: HookName, value: unknown): Decision | string {
  if (!isDecision(value)) return `returned ${describe(value)}, not allow() or deny()`;
  // Every field is read exactly once, into plain values: a getter that answers differently on each read cannot
  // pass the check with one value and be acted on with another.
  let v: {
    allow: unknown;
    reason: unknown;
    status: unknown;
    clientId: unknown;
    name: unknown;
    headers: Array<[string, unknown]> | undefined;
  };
  try {
    const raw = value as unknown as Record<string, unknown>;
    const h = raw.headers;
    v = {
      allow: raw.allow,
      reason: raw.reason,
      status: raw.status,
      clientId: raw.clientId,
      name: raw.name,
      headers: h === undefined ? undefined : typeof h === 'object' && h !== null ? Object.entries(h) : [],
    };
  } catch (err) {
    return `returned a decision that cannot be read (${(err as Error)?.message ?? String(err)})`;
  }
  if (v.allow === false) {
    if (typeof v.reason !== 'string' || v.reason === '') return 'deny() needs a reason';
    const s = v.status;
    if (s !== undefined && !(typeof s === 'number' && Number.isInteger(s) && s >= 400 && s <= 599)) {
      return `deny() status must be an integer from 400 to 599, got ${String(s)}`;
    }
    return deny(v.reason, s === undefined ? {} : { status: s as number });
  }
  if (v.allow !== true) return 'returned a malformed decision';
  if ((v.clientId !== undefined || v.name !== undefined) && hook !== 'onConnect') {
    return `allow({ clientId, name }) is only valid in onConnect, not ${hook}`;
  }
  if (v.headers !== undefined && hook !== 'onRequest') {
    return `allow({ headers }) is only valid in onRequest, not ${hook}`;
  }
  const options: AllowOptions = {};
  if (v.clientId !== undefined) {
    const id = v.clientId;
    const ok = typeof id === 'string' && /^[1-9]\d{0,19}$/.test(id) && BigInt(id) <= MAX_CLIENT_ID;
    if (!ok) return `allow() clientId must be a ClientID from 1 to 2^64-1, got ${JSON.stringify(id)}`;
    options.clientId = id;
  }
  if (v.name !== undefined) {
    if (typeof v.name !== 'string' || !/^\S{1,256}$/.test(v.name)) {
      return `allow() name must be 1 to 256 characters without spaces, got ${JSON.stringify(v.name)}`;
    }
    options.name = v.name;
  }
  if (v.headers !== undefined) {
    const headers: Record<string, string> = {};
    for (const [k, hv] of v.headers) {
      if (!HEADER_NAME.test(k) || typeof hv !== 'string' || !HEADER_VALUE.test(hv)) {
        return `allow() header ${JSON.stringify(k)} is not a valid header name and value`;
      }
      headers[k.toLowerCase()] = hv;
    }
    options.headers = headers;
  }
  return allow(options);
}

function describe(value: unknown): string {
  if (value === undefined) return 'nothing';
  if (value === null) return 'null';
  if (typeof value === 'object') return Array.isArray(value) ? 'an array' : 'a plain object';
  return `a ${typeof value}`;
}
