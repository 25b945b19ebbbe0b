/**
 * Authorization plugins in the sidecar: loading them from the config, asking them in order (the first deny wins),
 * and failing closed. Their allow()/deny() become the sidecar's one Decision (./decision.ts). A hook that throws, rejects, returns something other than allow()/deny() or answers after
 * its timeout denies. Every answer is counted in geminio_authz_decisions_total{hook, plugin, decision} and logged
 * on one line with clientId, streamId, hook, plugin, decision and reason.
 *
 * A new set of plugins replaces the running one only once every plugin of it loaded and set up; otherwise the
 * running set stays (a reload never falls back to allowing everything).
 */
import { X509Certificate } from 'node:crypto';
import { pathToFileURL } from 'node:url';
import {
  checkDecision,
  type HookFactsByName,
  type HookName,
  type PluginContext,
  type PluginDefinition,
  validatePlugin,
} from '../../plugins/index.js';
import type { PluginConfig } from '../config/schema.js';
import type { Logger } from '../observe/logger.js';
import type { Metrics } from '../observe/metrics.js';
import { BUILTIN_PLUGINS } from './builtin-plugins.js';
import { type Decision, deny, PLUGIN_HOOK, type Point } from './decision.js';

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
  handles(point: Point): boolean {
    const hook = PLUGIN_HOOK[point];
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
  async decide<P extends Point>(
    point: P,
    facts: HookFactsByName[(typeof PLUGIN_HOOK)[P]],
  ): Promise<Decision> {
    const hook = PLUGIN_HOOK[point];
    let current = { ...facts } as Record<string, unknown>;
    const outcome: Decision & { allow: true } = { allow: true };
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
        return withPlugin(
          timedOut ? deny('authorization timed out', 503) : deny('authorization failed', 403),
          p.name,
        );
      }
      const d = answer.decision;
      if (!d.allow) {
        this.log.warn({ ...ids, decision: 'deny', reason: d.reason }, 'authz decision');
        return withPlugin(deny(d.reason, d.status ?? 403), p.name);
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

/** A deny with the name of the plugin that made it (for geminio_authz_decisions_total). */
function withPlugin(d: Decision, plugin: string): Decision {
  return d.allow ? d : { ...d, plugin };
}
