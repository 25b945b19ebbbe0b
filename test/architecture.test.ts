/**
 * Layers import one way (docs/ARCHITECTURE.md). Reads the import specifiers of every .ts file under sdk/,
 * sidecar/ and plugins/ (type-only imports included: a type is a dependency too) and checks them against two
 * tables: the rank of each SDK layer (a file imports only files of its rank or lower), and the folder rules.
 * Every SDK file must appear in the rank table, so a new file is placed on purpose.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, normalize, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

/** SDK layers, lowest first: a path prefix and its rank. The longest matching prefix wins. */
const sdkRanks: Array<[prefix: string, rank: number, layer: string]> = [
  ['sdk/errors.ts', 0, 'base'],
  ['sdk/ids.ts', 0, 'base'],
  ['sdk/util.ts', 0, 'base'],
  ['sdk/diag.ts', 0, 'base'],
  ['sdk/address.ts', 0, 'base'],
  ['sdk/reconnect.ts', 0, 'base'],
  ['sdk/frame/', 1, 'frame'],
  ['sdk/config.ts', 1, 'frame'],
  ['sdk/connection/', 2, 'connection'],
  ['sdk/stream/', 3, 'stream core'],
  ['sdk/channel/', 4, 'channel'],
  ['sdk/session/', 5, 'session'],
  ['sdk/end.ts', 6, 'end'],
  ['sdk/diagnostics.ts', 6, 'end'],
  ['sdk/client.ts', 7, 'client/server'],
  ['sdk/server.ts', 7, 'client/server'],
  ['sdk/index.ts', 8, 'public API'],
];

/**
 * Folder rules: a file under `from` (unless listed in `exceptFrom`) may import a file under a `deny` prefix only if
 * it is listed in `except`.
 */
interface FolderRule {
  from: string;
  exceptFrom?: string[];
  deny: string[];
  except?: string[];
  why: string;
}

/** The sidecar's rooms, lowest first (docs/ARCHITECTURE.md, "Sidecar"); the composition root is above them all. */
const SC = 'sidecar/';
const ROOT_FILES = ['main.ts', 'cli.ts', 'commands.ts', 'demo.ts', 'process.ts'].map((f) => SC + f);
const room = (...names: string[]) => names.map((n) => `${SC}${n}/`);
const sidecarRules: FolderRule[] = [
  {
    from: `${SC}config/`,
    exceptFrom: [`${SC}config/preflight.ts`],
    deny: room('net', 'observe', 'policy', 'proxy', 'inbound', 'outbound', 'admin'),
    why: 'config/ is the lowest room',
  },
  {
    from: `${SC}config/preflight.ts`,
    deny: room('proxy', 'inbound', 'outbound', 'admin'),
    why: 'the preflight runs the checks of config/, net/, observe/ and policy/ only',
  },
  {
    from: `${SC}net/`,
    deny: room('observe', 'policy', 'proxy', 'inbound', 'outbound', 'admin'),
    why: 'net/ sits on config/',
  },
  {
    from: `${SC}observe/`,
    deny: room('policy', 'proxy', 'inbound', 'outbound', 'admin'),
    why: 'observe/ sits on net/',
  },
  {
    from: `${SC}policy/`,
    deny: room('proxy', 'inbound', 'outbound', 'admin'),
    why: 'policy/ sits on observe/',
  },
  {
    from: `${SC}proxy/`,
    deny: room('inbound', 'outbound', 'admin'),
    why: 'proxy/ is what both directions share: it knows neither',
  },
  {
    from: `${SC}inbound/`,
    deny: room('outbound', 'admin'),
    why: 'the two directions never import each other',
  },
  {
    from: `${SC}outbound/`,
    deny: room('inbound', 'admin'),
    why: 'the two directions never import each other',
  },
  {
    from: `${SC}admin/`,
    deny: room('policy', 'inbound', 'outbound'),
    why: 'admin/ sits on observe/ and proxy/',
  },
  {
    from: SC,
    exceptFrom: ROOT_FILES,
    deny: ROOT_FILES,
    why: 'the composition root (main.ts) and the entry points are above every room',
  },
  {
    from: SC,
    deny: ['plugins/'],
    except: [
      'plugins/index.ts',
      ...['allow-list', 'mtls-identity', 'rate-limit', 'token'].map((p) => `plugins/${p}/index.ts`),
    ],
    why: 'the sidecar uses the plugin API (plugins/index.ts) and the built-in plugins as modules',
  },
  {
    from: SC,
    deny: ['scripts/', 'test/', 'bench/', 'examples/'],
    why: 'build scripts and tests are not runtime code',
  },
];

const folderRules: FolderRule[] = [
  {
    from: 'sdk/',
    deny: ['sidecar/', 'plugins/', 'chaos/', 'bench/', 'test/', 'examples/'],
    why: 'the SDK never imports what is built on it',
  },
  { from: 'plugins/', deny: ['sidecar/'], why: 'plugins never import the sidecar' },
  {
    from: 'plugins/',
    deny: ['sdk/'],
    except: ['sdk/index.ts'],
    why: 'plugins use only the public API',
  },
  {
    from: 'sidecar/',
    deny: ['sdk/'],
    except: ['sdk/index.ts'],
    why: 'the sidecar uses only the public API (diagnostics included, through sdk/index.ts)',
  },
  ...sidecarRules,
];

/** Every import that breaks a rule, as `file imports target: why`. */
function folderViolations(edges: ReadonlyArray<{ file: string; imports: string[] }>): string[] {
  const violations: string[] = [];
  for (const { file, imports } of edges) {
    for (const rule of folderRules) {
      if (!file.startsWith(rule.from) || rule.exceptFrom?.includes(file)) continue;
      for (const target of imports) {
        if (rule.deny.some((d) => target.startsWith(d)) && !rule.except?.includes(target)) {
          violations.push(`${file} imports ${target}: ${rule.why}`);
        }
      }
    }
  }
  return violations;
}

function walk(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(join(root, dir), { withFileTypes: true })) {
    const path = `${dir}/${entry.name}`;
    if (entry.isDirectory()) out.push(...walk(path));
    else if (entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts')) out.push(path);
  }
  return out;
}

/** Relative import specifiers of a file, resolved to repository paths (`.js` read as the `.ts` source). */
function importsOf(file: string, source: string): string[] {
  const specs = new Set<string>();
  const patterns = [
    /^\s*(?:import|export)\s[^'"]*?\sfrom\s+['"]([^'"]+)['"]/gms,
    /^\s*import\s+['"]([^'"]+)['"]/gm,
    /\bimport\(\s*['"]([^'"]+)['"]\s*\)/g,
  ];
  for (const re of patterns) for (const m of source.matchAll(re)) specs.add(m[1]!);
  return [...specs]
    .filter((s) => s.startsWith('.'))
    .map((s) => relative(root, normalize(join(root, dirname(file), s))).replace(/\.js$/, '.ts'));
}

function rankOf(path: string): [number, string] | undefined {
  let best: [string, number, string] | undefined;
  for (const entry of sdkRanks)
    if (path.startsWith(entry[0]) && (!best || entry[0].length > best[0].length)) best = entry;
  return best && [best[1], best[2]];
}

const files = ['sdk', 'sidecar', 'plugins'].flatMap(walk);
const graph = files.map((file) => ({
  file,
  imports: importsOf(file, readFileSync(join(root, file), 'utf8')),
}));

describe('architecture: layers import one way', () => {
  it('reads the imports (the parser sees every form)', () => {
    const sample = [
      "import { a } from './a.js';",
      "import type { B } from '../b.js';",
      'export { c } from "./c.js";',
      "export * as d from './d.js';",
      "import {\n  e,\n  f,\n} from './ef.js';",
      "import './side.js';",
      "const g = await import('./g.js');",
      "import net from 'node:net';",
    ].join('\n');
    expect(importsOf('sdk/x/y.ts', sample).sort()).toEqual(
      [
        'sdk/b.ts',
        'sdk/x/a.ts',
        'sdk/x/c.ts',
        'sdk/x/d.ts',
        'sdk/x/ef.ts',
        'sdk/x/g.ts',
        'sdk/x/side.ts',
      ].sort(),
    );
    expect(graph.find((g) => g.file === 'sdk/end.ts')!.imports).toContain('sdk/session/session.ts');
  });

  it('every SDK file has a rank', () => {
    expect(files.filter((f) => f.startsWith('sdk/') && !rankOf(f))).toEqual([]);
  });

  it('no SDK layer imports a higher one', () => {
    const violations: string[] = [];
    for (const { file, imports } of graph) {
      const from = rankOf(file);
      if (!from) continue;
      for (const target of imports) {
        const to = rankOf(target);
        if (to && to[0] > from[0]) violations.push(`${file} (${from[1]}) imports ${target} (${to[1]})`);
      }
    }
    expect(violations).toEqual([]);
  });

  it('folder rules', () => {
    expect(folderViolations(graph)).toEqual([]);
  });

  it('every sidecar file is in a room or is one of the root files', () => {
    const rooms = room('config', 'net', 'observe', 'policy', 'proxy', 'inbound', 'outbound', 'admin');
    expect(
      files.filter((f) => f.startsWith(SC) && !ROOT_FILES.includes(f) && !rooms.some((r) => f.startsWith(r))),
    ).toEqual([]);
  });

  it('the sidecar rules catch a violation', () => {
    const edge = (file: string, line: string) => ({ file, imports: importsOf(file, line) });
    expect(
      folderViolations([
        edge('sidecar/outbound/http-listener.ts', "import { streamMeta } from '../inbound/router.js';"),
        edge('sidecar/proxy/http.ts', "import type { ServiceRouter } from '../inbound/router.js';"),
        edge('sidecar/config/load.ts', "import { Authz } from '../policy/authz.js';"),
        edge('sidecar/policy/hooks.ts', "import type { Sidecar } from '../main.js';"),
        edge('sidecar/observe/metrics.ts', "import { x } from '../../sdk/stream/core.js';"),
        edge('sidecar/policy/authz.ts', "import { y } from '../../plugins/token/format.js';"),
        // Allowed: the preflight above config/, the root over everything, the public APIs.
        edge('sidecar/config/preflight.ts', "import { Authz } from '../policy/authz.js';"),
        edge('sidecar/main.ts', "import { InboundListener } from './inbound/listener.js';"),
        edge('sidecar/net/listen.ts', "import { parseAddress } from '../../sdk/index.js';"),
      ]).map((v) => v.split(' imports ')[0]),
    ).toEqual([
      'sidecar/outbound/http-listener.ts',
      'sidecar/proxy/http.ts',
      'sidecar/config/load.ts',
      'sidecar/policy/hooks.ts',
      'sidecar/observe/metrics.ts',
      'sidecar/policy/authz.ts',
    ]);
  });

  it('the rules catch a violation (a lower layer importing a higher one)', () => {
    const bad = importsOf('sdk/stream/core.ts', "import { Channel } from '../channel/channel.js';");
    expect(rankOf(bad[0]!)![0]).toBeGreaterThan(rankOf('sdk/stream/core.ts')![0]);
  });
});
