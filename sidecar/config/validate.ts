/**
 * A small schema validator for the sidecar's configuration. A schema describes each key (type, range, default);
 * `validate()` returns the value with every default filled in, or the list of problems, each naming the key path,
 * the value found and what was expected — so an operator can fix a config file without reading code.
 */

export type Schema =
  | { kind: 'string'; default?: string; pattern?: RegExp; expected?: string; optional?: boolean }
  | { kind: 'int'; default?: number; min: number; max: number; optional?: boolean }
  | { kind: 'number'; default?: number; min: number; max: number; optional?: boolean }
  | { kind: 'bool'; default?: boolean; optional?: boolean }
  | { kind: 'enum'; values: readonly string[]; default?: string; optional?: boolean }
  | { kind: 'object'; fields: Record<string, Schema>; optional?: boolean }
  | { kind: 'array'; items: Schema; optional?: boolean }
  | { kind: 'map'; values: Schema; keyPattern?: RegExp; optional?: boolean }
  /** A mapping passed through unchecked (plugin options: the plugin checks them). */
  | { kind: 'mapping'; optional?: boolean };

/** One problem found in a config: where, what was there, what was expected. */
export interface ConfigProblem {
  path: string;
  value: unknown;
  expected: string;
  /** Where the value came from when not the file: `environment variable X`, `flag --set a.b`. */
  source?: string;
}

/**
 * Formats a problem as one line: `outbound.http[0].listen: got "x", expected host:port`, followed by
 * ` (set by environment variable X)` when an override, not the file, put the value there.
 */
export function formatProblem(p: ConfigProblem): string {
  const from = p.source ? ` (set by ${p.source})` : '';
  return `${p.path || '(root)'}: got ${show(p.value)}, expected ${p.expected}${from}`;
}

function show(value: unknown): string {
  if (value === undefined) return 'nothing';
  const text = JSON.stringify(value);
  if (text === undefined) return String(value);
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}

function join(path: string, key: string | number): string {
  if (typeof key === 'number') return `${path}[${key}]`;
  return path ? `${path}.${key}` : key;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Checks `value` against `schema`, fills in defaults, and appends what is wrong to `problems`. */
export function validate(schema: Schema, value: unknown, path = '', problems: ConfigProblem[] = []): unknown {
  if (value === undefined || value === null) {
    if ('default' in schema && schema.default !== undefined) return schema.default;
    if (schema.kind === 'object') {
      // A missing object is the object made of its defaults, unless it is optional.
      return schema.optional ? undefined : validate(schema, {}, path, problems);
    }
    if (schema.kind === 'array') return schema.optional ? undefined : [];
    if (schema.kind === 'map' || schema.kind === 'mapping') return schema.optional ? undefined : {};
    if (!schema.optional) problems.push({ path, value, expected: `a value (${describe(schema)})` });
    return undefined;
  }
  switch (schema.kind) {
    case 'string':
      if (typeof value !== 'string' || (schema.pattern && !schema.pattern.test(value))) {
        problems.push({ path, value, expected: describe(schema) });
      }
      return value;
    case 'int':
    case 'number': {
      // Strings come from environment variables and flags; only plain decimal ones are numbers (Number() would
      // also take "0x10", "1e3" or " 7 ").
      const decimal = schema.kind === 'int' ? /^-?\d+$/ : /^-?\d+(\.\d+)?$/;
      const n = typeof value === 'string' && decimal.test(value) ? Number(value) : value;
      const ok =
        typeof n === 'number' &&
        Number.isFinite(n) &&
        (schema.kind === 'number' || Number.isInteger(n)) &&
        n >= schema.min &&
        n <= schema.max;
      if (!ok) problems.push({ path, value, expected: describe(schema) });
      return n;
    }
    case 'bool':
      if (value === 'true' || value === 'false') return value === 'true';
      if (typeof value !== 'boolean') problems.push({ path, value, expected: describe(schema) });
      return value;
    case 'enum':
      if (typeof value !== 'string' || !schema.values.includes(value)) {
        problems.push({ path, value, expected: describe(schema) });
      }
      return value;
    case 'array':
      if (!Array.isArray(value)) {
        problems.push({ path, value, expected: 'a list' });
        return [];
      }
      return value.map((item, i) => validate(schema.items, item, join(path, i), problems));
    case 'map': {
      if (!isPlainObject(value)) {
        problems.push({ path, value, expected: 'a mapping of names to settings' });
        return {};
      }
      const out: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(value)) {
        if (schema.keyPattern && !schema.keyPattern.test(k)) {
          problems.push({ path: join(path, k), value: k, expected: `a name matching ${schema.keyPattern}` });
        }
        out[k] = validate(schema.values, v, join(path, k), problems);
      }
      return out;
    }
    case 'mapping':
      if (!isPlainObject(value)) problems.push({ path, value, expected: describe(schema) });
      return value;
    case 'object': {
      if (!isPlainObject(value)) {
        problems.push({ path, value, expected: 'a mapping with keys' });
        return {};
      }
      const out: Record<string, unknown> = {};
      const known = Object.keys(schema.fields);
      for (const k of Object.keys(value)) {
        if (!known.includes(k)) {
          problems.push({
            path: join(path, k),
            value: value[k],
            expected: `no such key (one of: ${known.join(', ')})`,
          });
        }
      }
      for (const [k, field] of Object.entries(schema.fields)) {
        const v = validate(field, value[k], join(path, k), problems);
        if (v !== undefined) out[k] = v;
      }
      return out;
    }
  }
}

function describe(schema: Schema): string {
  switch (schema.kind) {
    case 'string':
      return schema.expected ?? 'a string';
    case 'int':
      return `an integer from ${schema.min} to ${schema.max}`;
    case 'number':
      return `a number from ${schema.min} to ${schema.max}`;
    case 'bool':
      return 'true or false';
    case 'enum':
      return `one of ${schema.values.join(', ')}`;
    case 'object':
      return 'a mapping with keys';
    case 'array':
      return 'a list';
    case 'map':
      return 'a mapping of names to settings';
    case 'mapping':
      return 'a mapping';
  }
}

// ---- the type a schema describes ----

type Simplify<T> = { [K in keyof T]: T[K] } & {};
type Optional<S> = S extends { optional: true } ? true : false;

/** The fields of an object schema as a type: optional schemas are optional keys. */
type InferFields<F> = Simplify<
  { -readonly [K in keyof F as Optional<F[K]> extends true ? never : K]: Infer<F[K]> } & {
    -readonly [K in keyof F as Optional<F[K]> extends true ? K : never]?: Infer<F[K]>;
  }
>;

/** The type of the value `validate()` returns for schema `S` (defaults filled in). */
export type Infer<S> = S extends { kind: 'string' }
  ? string
  : S extends { kind: 'int' | 'number' }
    ? number
    : S extends { kind: 'bool' }
      ? boolean
      : S extends { kind: 'enum'; values: readonly (infer V)[] }
        ? V
        : S extends { kind: 'object'; fields: infer F }
          ? InferFields<F>
          : S extends { kind: 'array'; items: infer I }
            ? Infer<I>[]
            : S extends { kind: 'map'; values: infer V }
              ? Record<string, Infer<V>>
              : S extends { kind: 'mapping' }
                ? Record<string, unknown>
                : never;

// ---- shorthands used by schema.ts ----

const DAY_MS = 86_400_000;

/** A duration in milliseconds with a default; 0 allowed only where `min` says so. */
export const ms = (def: number, min = 1) => ({ kind: 'int', default: def, min, max: DAY_MS }) as const;
export const int = (def: number, min: number, max: number) =>
  ({
    kind: 'int',
    default: def,
    min,
    max,
  }) as const;
export const bool = (def: boolean) => ({ kind: 'bool', default: def }) as const;
export const str = <const O extends { default?: string; optional?: boolean } = {}>(opts: O = {} as O) =>
  ({
    kind: 'string',
    ...opts,
  }) as { kind: 'string' } & O;
/** A TCP port, 0 to 65535, in decimal without leading zeros. */
export const PORT = '(?:0|[1-9]\\d{0,3}|[1-5]\\d{4}|6[0-4]\\d{3}|65[0-4]\\d{2}|655[0-2]\\d|6553[0-5])';
export const address = <const O extends { default?: string; optional?: boolean } = {}>(opts: O = {} as O) =>
  ({
    kind: 'string',
    pattern: new RegExp(`^(\\[[0-9a-fA-F:.]+\\]|[A-Za-z0-9_.-]*):${PORT}$`),
    expected: 'an address host:port with a port from 0 to 65535 (e.g. 127.0.0.1:8080)',
    ...opts,
  }) as { kind: 'string'; pattern: RegExp; expected: string } & O;
export const name = () =>
  ({
    kind: 'string',
    pattern: /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/,
    expected: 'a name of letters, digits, "_", "." or "-" (at most 63)',
  }) as const;
export const object = <const F extends Record<string, Schema>, const O extends boolean = false>(
  fields: F,
  optional: O = false as O,
) => ({ kind: 'object', fields, optional }) as { kind: 'object'; fields: F; optional: O };
