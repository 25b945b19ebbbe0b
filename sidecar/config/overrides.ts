/**
 * Overrides applied to a raw config before validation: from the environment (named shortcuts and the generic
 * `GEMINIO_SIDECAR__a__b=value` scheme) and from command-line flags.
 */

const ENV_PREFIX = 'GEMINIO_SIDECAR__';
/** Named shortcuts for the settings most often overridden. */
const ENV_SHORTCUTS: Record<string, string[]> = {
  GEMINIO_SIDECAR_ADMIN_LISTEN: ['admin', 'listen'],
  GEMINIO_SIDECAR_ADMIN_PORT: ['admin', 'port'],
  GEMINIO_SIDECAR_LOG_LEVEL: ['log', 'level'],
  GEMINIO_SIDECAR_LOG_FORMAT: ['log', 'format'],
  GEMINIO_SIDECAR_NAME: ['name'],
  GEMINIO_SIDECAR_INBOUND_LISTEN: ['inbound', 'listen'],
  GEMINIO_SIDECAR_GRACE_PERIOD_MS: ['shutdown', 'gracePeriodMs'],
};

/**
 * Applies overrides to a raw config: `GEMINIO_SIDECAR__a__b__0__c=value` sets a.b[0].c (the value is parsed as
 * JSON when it parses, else kept as a string), plus the named shortcuts above. `admin.port` replaces the port of
 * admin.listen.
 */
export function applyOverrides(
  raw: Record<string, unknown>,
  overrides: ReadonlyArray<readonly [string[], string, string?]>,
): void {
  for (const [path, text] of overrides) {
    if (path.join('.') === 'admin.port') {
      const admin = ensureObject(raw, 'admin');
      const host = String(admin.listen ?? '127.0.0.1:9901').replace(/:\d+$/, '');
      admin.listen = `${host}:${text}`;
      continue;
    }
    let target: Record<string, unknown> = raw;
    for (const key of path.slice(0, -1)) target = ensureObject(target, key);
    target[path[path.length - 1]!] = parseValue(text);
  }
}

/**
 * The overrides found in an environment, in a stable order (shortcuts first), each with its source
 * (`environment variable NAME`) for error messages.
 */
export function envOverrides(env: NodeJS.ProcessEnv): Array<[string[], string, string]> {
  const out: Array<[string[], string, string]> = [];
  for (const [k, path] of Object.entries(ENV_SHORTCUTS)) {
    const v = env[k];
    if (v !== undefined) out.push([path, v, `environment variable ${k}`]);
  }
  for (const k of Object.keys(env).sort()) {
    if (k.startsWith(ENV_PREFIX) && env[k] !== undefined) {
      out.push([
        k.slice(ENV_PREFIX.length).split('__').filter(Boolean),
        env[k]!,
        `environment variable ${k}`,
      ]);
    }
  }
  return out;
}

function ensureObject(obj: Record<string, unknown>, key: string): Record<string, unknown> {
  const existing = obj[key];
  if (typeof existing === 'object' && existing !== null) return existing as Record<string, unknown>;
  // A numeric key under a missing parent makes a list (for outbound.http.0.listen and the like).
  const made: Record<string, unknown> = {};
  obj[key] = made;
  return made;
}

function parseValue(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

// Env overrides of list items make objects keyed "0", "1": turn those back into lists.
export function fixLists(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(fixLists);
  if (typeof value !== 'object' || value === null) return value;
  const obj = value as Record<string, unknown>;
  const keys = Object.keys(obj);
  const fixed = Object.fromEntries(keys.map((k) => [k, fixLists(obj[k])]));
  return keys.length > 0 && keys.every((k) => /^\d+$/.test(k)) ? keys.map((k) => fixed[k]) : fixed;
}
