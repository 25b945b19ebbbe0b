/**
 * Authorization plugins in the sidecar: loading them from the config, asking them in order (the first deny wins),
 * and failing closed. A hook that throws, rejects, returns something other than allow()/deny() or answers after
 * its timeout denies. Every answer is counted in geminio_authz_decisions_total{hook, plugin, decision} and logged
 * on one line with clientId, streamId, hook, plugin, decision and reason.
 *
 * A new set of plugins replaces the running one only once every plugin of it loaded and set up; otherwise the
 * running set stays (a reload never falls back to allowing everything).
 */
import { X509Certificate } from 'node:crypto';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import {
  checkDecision,
  type HookFactsByName,
  type HookName,
  type PluginContext,
  type PluginDefinition,
  validatePlugin,
} from '../../plugins/index.js';
import type { Logger } from '../observe/logger.js';
import type { Metrics } from '../observe/metrics.js';
import { BUILTIN_PLUGINS } from './builtin-plugins.js';

/** One `plugins` entry of the config; `path` is absolute (or `builtin:<name>`) once the config is loaded. */
export interface PluginConfig {
  path: string;
  options: Record<string, unknown>;
  timeoutMs: number;
}

export type AuthzPoint = 'connect' | 'stream' | 'request' | 'rpc' | 'message';

const HOOK_OF: Record<AuthzPoint, HookName> = {
  connect: 'onConnect',
  stream: 'onStream',
  request: 'onRequest',
  rpc: 'onRpc',
  message: 'onMessage',
};

/** What the plugins decided. A deny carries the HTTP status and the text the client sees. */
export type AuthzOutcome =
  | { allow: true; clientId?: string; name?: string; headers?: Record<string, string> }
  | { allow: false; status: number; reason: string; plugin?: string };

interface LoadedPlugin {
  name: string;
  source: string;
  timeoutMs: number;
  definition: PluginDefinition<unknown, unknown>;
  state: unknown;
}

/** Each load imports user plugin files afresh (ESM caches by URL), so SIGHUP picks up edited code. */
let generation = 0;

async function importPlugin(source: string): Promise<unknown> {
  if (source.startsWith('builtin:')) {
    const builtin = BUILTIN_PLUGINS[source.slice('builtin:'.length)];
    if (!builtin) {
      throw new Error(`no built-in plugin "${source}" (one of ${Object.keys(BUILTIN_PLUGINS).join(', ')})`);
    }
    return builtin;
  }
  const url = pathToFileURL(source);
  url.searchParams.set('load', String(++generation));
  const mod = (await import(url.href)) as { default?: unknown };
  if (mod.default === undefined)
    throw new Error('the module has no default export (export default definePlugin(...))');
  return mod.default;
}

export class Authz {
  private plugins: readonly LoadedPlugin[] = [];
  private readonly log: Logger;

  constructor(
    private readonly metrics: Metrics,
    logger: Logger,
  ) {
    this.log = logger.child({ component: 'authz' });
  }

  /** True when some running plugin has the hook of `point` (when none has, `decide` allows without asking). */
  handles(point: AuthzPoint): boolean {
    const hook = HOOK_OF[point];
    for (const p of this.plugins) if (p.definition.hooks[hook]) return true;
    return false;
  }

  /** Names of the running plugins, in order. */
  get names(): string[] {
    return this.plugins.map((p) => p.name);
  }

  /**
   * Loads and sets up every plugin of `entries`, then swaps them in and closes the previous ones. Throws (keeping
   * the running set) when any of them fails; the error names the plugin and its path.
   */
  async load(entries: readonly PluginConfig[], configDir: string, firstIndex = 0): Promise<void> {
    const next: LoadedPlugin[] = [];
    try {
      for (const [i, e] of entries.entries()) {
        const where = `plugins[${firstIndex + i}] ${e.path}`;
        let definition: PluginDefinition<unknown, unknown>;
        try {
          definition = validatePlugin(await importPlugin(e.path), where);
        } catch (err) {
          throw new Error(`cannot load ${where}: ${(err as Error).message}`, { cause: err });
        }
        const context: PluginContext = {
          name: definition.name,
          configDir,
          logger: this.log.child({ plugin: definition.name }),
        };
        let state: unknown;
        try {
          state = definition.setup ? await definition.setup(e.options, context) : e.options;
        } catch (err) {
          throw new Error(`plugin "${definition.name}" (${where}): setup failed: ${(err as Error).message}`, {
            cause: err,
          });
        }
        next.push({ name: definition.name, source: e.path, timeoutMs: e.timeoutMs, definition, state });
      }
    } catch (err) {
      await closeAll(next, this.log);
      throw err;
    }
    const previous = this.plugins;
    this.plugins = next;
    this.log.info({ plugins: this.names }, 'authz plugins loaded');
    await closeAll(previous, this.log);
  }

  /** Closes the running plugins (shutdown). */
  async close(): Promise<void> {
    const previous = this.plugins;
    this.plugins = [];
    await closeAll(previous, this.log);
  }

  /**
   * Asks every plugin that has the hook, in order; the first deny wins. For connect, a ClientID or name one plugin
   * assigns is what the next one sees, and what the outcome carries.
   */
  async decide<P extends AuthzPoint>(
    point: P,
    facts: HookFactsByName[(typeof HOOK_OF)[P]],
  ): Promise<AuthzOutcome> {
    const hook = HOOK_OF[point];
    let current = { ...facts } as Record<string, unknown>;
    const outcome: AuthzOutcome & { allow: true } = { allow: true };
    for (const p of this.plugins) {
      const fn = p.definition.hooks[hook] as ((f: unknown, s: unknown) => unknown) | undefined;
      if (!fn) continue;
      const answer = await this.ask(p, hook, fn, Object.freeze({ ...current }));
      const ids = { clientId: current.clientId, streamId: current.streamId, hook: point, plugin: p.name };
      if ('failure' in answer) {
        const timedOut = answer.failure === 'timeout';
        this.metrics.authzFailures.inc({ hook: point, plugin: p.name, kind: answer.failure });
        this.log.error(
          { ...ids, decision: 'deny', reason: answer.detail, failure: answer.failure },
          'authz decision',
        );
        return {
          allow: false,
          status: timedOut ? 503 : 403,
          reason: timedOut ? 'authorization timed out' : 'authorization failed',
          plugin: p.name,
        };
      }
      const d = answer.decision;
      if (!d.allow) {
        this.log.warn({ ...ids, decision: 'deny', reason: d.reason }, 'authz decision');
        return { allow: false, status: d.status ?? 403, reason: d.reason, plugin: p.name };
      }
      this.log.info(
        { ...ids, decision: 'allow', clientIdAssigned: d.clientId, name: d.name },
        'authz decision',
      );
      if (d.clientId !== undefined) outcome.clientId = d.clientId;
      if (d.name !== undefined) outcome.name = d.name;
      if (d.headers !== undefined) outcome.headers = { ...outcome.headers, ...d.headers };
      current = {
        ...current,
        ...(d.clientId ? { clientId: d.clientId } : {}),
        ...(d.name ? { name: d.name } : {}),
      };
    }
    return outcome;
  }

  private async ask(
    p: LoadedPlugin,
    hook: HookName,
    fn: (f: unknown, s: unknown) => unknown,
    facts: unknown,
  ): Promise<
    | { decision: Exclude<ReturnType<typeof checkDecision>, string> }
    | { failure: 'error' | 'invalid' | 'timeout'; detail: string }
  > {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(resolve, p.timeoutMs, 'timeout');
    });
    try {
      const value = await Promise.race([
        Promise.resolve().then(() => fn.call(p.definition.hooks, facts, p.state)),
        timeout,
      ]);
      if (value === 'timeout')
        return { failure: 'timeout', detail: `${hook} did not answer within ${p.timeoutMs} ms` };
      const checked = checkDecision(hook, value);
      if (typeof checked === 'string') return { failure: 'invalid', detail: `${hook} ${checked}` };
      return { decision: checked };
    } catch (err) {
      return { failure: 'error', detail: `${hook} threw: ${(err as Error)?.message ?? String(err)}` };
    } finally {
      clearTimeout(timer);
    }
  }
}

async function closeAll(plugins: readonly LoadedPlugin[], log: Logger): Promise<void> {
  for (const p of plugins) {
    try {
      await p.definition.close?.(p.state);
    } catch (err) {
      log.warn({ plugin: p.name, err: (err as Error).message }, 'plugin close failed');
    }
  }
}

/** The TLS peer certificate the SDK reports (a detailed object with `raw`), as an X509Certificate. */
export function toX509(peerCertificate: unknown): X509Certificate | undefined {
  const raw = (peerCertificate as { raw?: unknown } | undefined)?.raw;
  if (!Buffer.isBuffer(raw)) return undefined;
  try {
    return new X509Certificate(raw);
  } catch {
    return undefined;
  }
}

/** The connection meta as a JSON object ({} when it is not one). */
export function parseMeta(meta: Buffer | undefined): Record<string, unknown> {
  if (!meta || meta.length === 0) return {};
  try {
    const v = JSON.parse(meta.toString('utf8')) as unknown;
    return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : {};
  } catch {
    return {};
  }
}

/** Resolves a plugin path from the config against the config file's directory. */
export function resolvePluginPath(p: string, configDir: string): string {
  return p.startsWith('builtin:') ? p : path.resolve(configDir, p);
}
