/**
 * Loading the sidecar's configuration (./schema.ts) from a YAML or JSON file with environment overrides, and the
 * checks that span keys.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { applyOverrides, envOverrides, fixLists } from './overrides.js';
import { type SidecarConfig, schema, type TlsConfig } from './schema.js';
import { type ConfigProblem, formatProblem, validate } from './validate.js';

export { applyOverrides, envOverrides } from './overrides.js';

/** A config that failed validation; `problems` has one entry per wrong key. */
export class ConfigError extends Error {
  readonly code = 'GEMINIO_SIDECAR_ERR_CONFIG';
  constructor(
    readonly problems: ConfigProblem[],
    source = 'config',
  ) {
    super(`invalid ${source}:\n${problems.map((p) => `  - ${formatProblem(p)}`).join('\n')}`);
  }
}

/** Where overridden keys came from: a key path as problems spell it (`a.b[0].c`) -> `environment variable X`. */
export type OverrideSources = Map<string, string>;

/**
 * Validates a raw config object: the schema and the checks that span keys (references, duplicates), in one round.
 * A problem about a key an override set names that override (`sources`).
 */
export function parseConfig(raw: unknown, source?: string, sources?: OverrideSources): SidecarConfig {
  const { config, problems } = validateConfig(raw, sources);
  if (problems.length > 0) throw new ConfigError(problems, source);
  return config;
}

/** As parseConfig, but returns the problems with the config (whose wrong values are left as found). */
export function validateConfig(
  raw: unknown,
  sources?: OverrideSources,
): { config: SidecarConfig; problems: ConfigProblem[] } {
  const problems: ConfigProblem[] = [];
  const config = validate(schema, raw ?? {}, '', problems) as SidecarConfig;
  const cross: ConfigProblem[] = [];
  crossCheck(config, cross);
  // A cross-key check about a key the schema already found wrong would only repeat it.
  const schemaProblems = [...problems];
  for (const c of cross) if (!coveredBy(c.path, schemaProblems)) problems.push(c);
  return { config, problems: withSources(problems, sources) };
}

/** True when `path`, or a key above it, already has a problem. */
export function coveredBy(path: string, problems: readonly ConfigProblem[]): boolean {
  return problems.some(
    (w) => path === w.path || path.startsWith(`${w.path}.`) || path.startsWith(`${w.path}[`),
  );
}

/** Names the override that set each problem's key (or a key above it). */
export function withSources(
  problems: ConfigProblem[],
  sources: OverrideSources | undefined,
): ConfigProblem[] {
  if (!sources || sources.size === 0) return problems;
  return problems.map((p) => {
    let best: string | undefined;
    let bestLength = -1;
    for (const [key, from] of sources) {
      const covers = p.path === key || p.path.startsWith(`${key}.`) || p.path.startsWith(`${key}[`);
      if (covers && key.length > bestLength) {
        best = from;
        bestLength = key.length;
      }
    }
    return best ? { ...p, source: best } : p;
  });
}

// Runs on a config the schema may have found wrong: every value is checked for its type before use.
function crossCheck(c: SidecarConfig, problems: ConfigProblem[]): void {
  const names = new Set<string>();
  const binds = new Map<string, string>();
  const bind = (path: string, addr: unknown) => {
    if (typeof addr !== 'string' || /:0$/.test(addr)) return; // port 0: the system picks a free port each time
    const other = binds.get(addr);
    if (other) problems.push({ path, value: addr, expected: `an address not already used by ${other}` });
    binds.set(addr, path);
  };
  bind('admin.listen', c.admin?.listen);
  if (c.inbound) bind('inbound.listen', c.inbound.listen);
  type Named = { name?: string; listen?: string; upstream?: string };
  const listeners: Array<[string, Named]> = [
    ...(c.outbound?.http ?? []).map((l, i) => [`outbound.http[${i}]`, l] as [string, Named]),
    ...(c.outbound?.tcp ?? []).map((l, i) => [`outbound.tcp[${i}]`, l] as [string, Named]),
    ...c.tunnels.map((l, i) => [`tunnels[${i}]`, l] as [string, Named]),
  ];
  for (const [path, l] of listeners) {
    if (typeof l.name === 'string') {
      if (names.has(l.name))
        problems.push({ path: `${path}.name`, value: l.name, expected: 'a unique listener name' });
      names.add(l.name);
    }
    bind(`${path}.listen`, l.listen);
    if (typeof l.upstream === 'string' && !c.upstreams[l.upstream]) {
      const known = Object.keys(c.upstreams).join(', ') || 'none defined';
      problems.push({ path: `${path}.upstream`, value: l.upstream, expected: `an upstream name (${known})` });
    }
  }
  c.tunnels.forEach((t, i) => {
    if ((t.client === undefined) === (t.clientId === undefined)) {
      problems.push({ path: `tunnels[${i}]`, value: t, expected: 'exactly one of client or clientId' });
    }
    if (!c.inbound) problems.push({ path: `tunnels[${i}]`, value: t.name, expected: 'an inbound section' });
  });
  for (const [n, u] of Object.entries(c.upstreams)) {
    const forms = [u.address, u.endpoints, u.discovery].filter((f) => f !== undefined).length;
    if (forms !== 1) {
      problems.push({
        path: `upstreams.${n}`,
        value: n,
        expected: 'exactly one of address, endpoints or discovery',
      });
    }
    if (u.endpoints !== undefined && u.endpoints.length === 0) {
      problems.push({
        path: `upstreams.${n}.endpoints`,
        value: u.endpoints,
        expected: 'at least one host:port',
      });
    }
    if (u.token !== undefined && u.tokenFile !== undefined) {
      problems.push({ path: `upstreams.${n}`, value: n, expected: 'at most one of token or tokenFile' });
    }
    if (u.reconnect?.maxDelayMs < u.reconnect?.minDelayMs) {
      const path = `upstreams.${n}.reconnect.maxDelayMs`;
      problems.push({ path, value: u.reconnect.maxDelayMs, expected: 'a delay >= minDelayMs' });
    }
    if (u.tls) checkTlsKeys(`upstreams.${n}.tls`, u.tls, false, problems);
  }
  if (c.inbound?.tls) checkTlsKeys('inbound.tls', c.inbound.tls, true, problems);
  (c.outbound?.http ?? []).forEach((l, i) => {
    if (l?.tls) checkTlsKeys(`outbound.http[${i}].tls`, l.tls, true, problems);
  });
  for (const [n, s] of Object.entries(c.services)) {
    const t = s?.tls;
    if (!t || typeof s.target !== 'string') continue;
    const path = `services.${n}.tls`;
    const named = [t.caFile, t.certFile, t.keyFile, t.servername].some((v) => v !== undefined);
    if (named && !s.target.startsWith('h2://')) {
      problems.push({
        path,
        value: t,
        expected: 'no TLS files or servername (only an h2:// target uses them)',
      });
    } else if ((t.certFile === undefined) !== (t.keyFile === undefined)) {
      const value = { certFile: t.certFile, keyFile: t.keyFile };
      problems.push({ path, value, expected: 'both certFile and keyFile, or neither' });
    }
  }
}

/** A certificate needs its key and the other way round; a TLS server needs both. */
function checkTlsKeys(path: string, t: TlsConfig, server: boolean, problems: ConfigProblem[]): void {
  if (t.enabled !== true) return;
  if (server && (t.certFile === undefined || t.keyFile === undefined)) {
    const value = { certFile: t.certFile, keyFile: t.keyFile };
    problems.push({ path, value, expected: 'certFile and keyFile when enabled (a TLS server needs both)' });
  } else if ((t.certFile === undefined) !== (t.keyFile === undefined)) {
    const value = { certFile: t.certFile, keyFile: t.keyFile };
    problems.push({ path, value, expected: 'both certFile and keyFile, or neither' });
  }
}

/** Reads a YAML or JSON file (JSON is YAML); a syntax error is reported with the file name and position. */
export function readConfigFile(file: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(
      [{ path: '', value: file, expected: `a readable file (${(err as Error).message})` }],
      file,
    );
  }
  let raw: unknown;
  try {
    raw = parseYaml(text);
  } catch (err) {
    throw new ConfigError(
      [{ path: '', value: file, expected: `valid YAML or JSON: ${(err as Error).message}` }],
      file,
    );
  }
  if (raw === null || raw === undefined) return {};
  if (typeof raw !== 'object' || Array.isArray(raw)) {
    throw new ConfigError([{ path: '', value: raw, expected: 'a mapping at the top level' }], file);
  }
  return raw as Record<string, unknown>;
}

/** An override of one key: its path, its text, and where it came from (`environment variable X`). */
export type Override = [path: string[], value: string, source?: string];

/** The key path of an override as problems spell it: `outbound.http[0].listen`. */
function keyPath(path: string[]): string {
  return path.reduce((out, k) => (/^\d+$/.test(k) ? `${out}[${k}]` : out ? `${out}.${k}` : k), '');
}

/**
 * Loads a file (if any), applies the environment then the flags, and validates. Problems name the environment
 * variable or flag that set a wrong key.
 */
export function loadConfig(
  file: string | undefined,
  options: { env?: NodeJS.ProcessEnv; flags?: Override[] } = {},
): SidecarConfig {
  const { config, problems } = readConfig(file, options);
  if (problems.length > 0) throw new ConfigError(problems, file ?? 'config');
  return config;
}

/**
 * As loadConfig, but returns the problems with the config (for checks that go on: see preflight.ts), and the
 * sources of the overrides. Throws only when the file cannot be read or parsed.
 */
export function readConfig(
  file: string | undefined,
  options: { env?: NodeJS.ProcessEnv; flags?: Override[] } = {},
): { config: SidecarConfig; problems: ConfigProblem[]; sources: OverrideSources } {
  const raw = file ? readConfigFile(file) : {};
  const overrides = [...envOverrides(options.env ?? {}), ...(options.flags ?? [])];
  applyOverrides(raw, overrides);
  const sources: OverrideSources = new Map();
  for (const [p, , from] of overrides) {
    if (from) sources.set(keyPath(p.join('.') === 'admin.port' ? ['admin', 'listen'] : p), from);
  }
  const { config, problems } = validateConfig(fixLists(raw), sources);
  withConfigDir(config, file ? path.dirname(path.resolve(file)) : process.cwd());
  return { config, problems, sources };
}

/** Resolves the files a config names (plugins, token files, TLS files) against `dir`, and records it. */
export function withConfigDir(config: SidecarConfig, dir: string): SidecarConfig {
  Object.defineProperty(config, 'configDir', {
    value: dir,
    enumerable: false,
    writable: true,
    configurable: true,
  });
  // The config may hold wrong values here (readConfig goes on to further checks): only strings are paths.
  for (const p of config.plugins) if (typeof p?.path === 'string') p.path = resolvePluginPath(p.path, dir);
  const resolveTls = (t: Pick<TlsConfig, 'caFile' | 'certFile' | 'keyFile'> | undefined) => {
    for (const k of ['caFile', 'certFile', 'keyFile'] as const) {
      const f = t?.[k];
      if (typeof f === 'string') t![k] = path.resolve(dir, f);
    }
  };
  for (const u of Object.values(config.upstreams)) {
    if (typeof u?.tokenFile === 'string') u.tokenFile = path.resolve(dir, u.tokenFile);
    resolveTls(u?.tls);
  }
  if (config.inbound) resolveTls(config.inbound.tls);
  for (const l of config.outbound?.http ?? []) resolveTls(l?.tls);
  for (const s of Object.values(config.services)) resolveTls(s?.tls);
  return config;
}

/** Resolves a plugin path from the config against the config file's directory. */
export function resolvePluginPath(p: string, configDir: string): string {
  return p.startsWith('builtin:') ? p : path.resolve(configDir, p);
}
