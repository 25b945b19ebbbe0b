/**
 * The two npm packages, as a user gets them: `npm pack` of the root (`geminio`: the SDK and the plugin API) and of
 * packages/geminio-sidecar (the sidecar bundle, its bin, the built-in plugins inside it), each built by its
 * prepack. Checks what the tarballs hold, then installs both offline into a scratch project, typechecks a consumer
 * (ESM and CommonJS, with and without esModuleInterop, under nodenext, node16 and bundler, skipLibCheck off so the
 * published .d.ts are checked) with the repository's TypeScript, and runs it: an SDK server and client, and the
 * packaged sidecar carrying an HTTP request from an SDK client to an HTTP server.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BUILTIN_PLUGINS } from '../../sidecar/policy/builtin-plugins.js';
import { repoRoot } from './tools.js';

interface Packed {
  filename: string;
  files: Array<{ path: string; size: number }>;
}

const tsc = path.join(repoRoot, 'node_modules/typescript/bin/tsc');
let scratch = '';
let geminio: Packed;
let sidecar: Packed;

function npm(args: string[], cwd: string): string {
  return execFileSync('npm', args, {
    cwd,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
    maxBuffer: 1 << 26,
  });
}

function pack(dir: string): Packed {
  const out = JSON.parse(npm(['pack', '--json', '--pack-destination', scratch], dir)) as Packed[];
  return out[0] as Packed;
}

/** The consumer program; `header` imports the packages (ESM import or CommonJS-compiled import). */
function program(header: string): string {
  return `${header}
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function freePort(): Promise<number> {
  const s = http.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address() as AddressInfo;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

async function main(): Promise<void> {
  // The SDK: a server and a client.
  const options: ListenOptions = {};
  const listener: Listener = await listen('127.0.0.1:0', options);
  void (async () => {
    for await (const end of listener) await end.register('echo', ({ data }) => 'echo ' + data);
  })();
  const client: End = await dial(listener.address(), { meta: 'consumer' });
  const reply = await client.call('echo', 'hi', { timeout: 10_000 });
  console.log('rpc: ' + reply.data.toString());
  await client.close();
  await listener.close();

  // The plugin API.
  const plugin = definePlugin({ name: 'consumer', hooks: { onConnect: () => allow(), onRpc: () => deny('no') } });
  const claims: TokenClaims = { sub: 'x', exp: 1 };
  console.log('plugin: ' + plugin.name + ' ' + signToken(claims, 'k').split('.').length);

  // The sidecar package: its bin, started as a program would start it.
  console.log('sidecar version: ' + execFileSync(process.execPath, [sidecarBin, '--version'], { encoding: 'utf8' }).trim() + ' ' + version);
  console.log('builtins: ' + builtinPlugins.join(','));
  const app = http.createServer((req, res) => res.end('app saw ' + req.url));
  await new Promise<void>((r) => app.listen(0, '127.0.0.1', r));
  const [inbound, admin] = [await freePort(), await freePort()];
  const dir = mkdtempSync(path.join(os.tmpdir(), 'consumer-'));
  const file = path.join(dir, 'sidecar.yaml');
  writeFileSync(file, [
    'name: consumer-sidecar',
    'admin: { listen: 127.0.0.1:' + admin + ' }',
    'inbound: { listen: 127.0.0.1:' + inbound + ' }',
    'services: { app: { target: http://127.0.0.1:' + (app.address() as AddressInfo).port + ' } }',
  ].join('\\n'));
  const child = spawn(process.execPath, [sidecarBin, 'run', '--config', file], { stdio: ['ignore', 'ignore', 'inherit'] });
  let end: End | undefined;
  for (let i = 0; !end; i++) {
    try {
      end = await dial('127.0.0.1:' + inbound, { meta: JSON.stringify({ name: 'consumer' }) });
    } catch (err) {
      if (child.exitCode !== null || i > 600) throw err;
      await sleep(100);
    }
  }
  const stream = await end.openStream({ meta: JSON.stringify({ service: 'app', proto: 'http' }) });
  stream.write('GET /hello HTTP/1.1\\r\\nHost: app\\r\\nConnection: close\\r\\n\\r\\n');
  let text = '';
  for await (const chunk of stream) {
    text += chunk;
    if (text.endsWith('app saw /hello')) break;
  }
  console.log('sidecar: ' + text.split('\\r\\n')[0] + ' | ' + text.slice(text.lastIndexOf('\\n') + 1));
  await end.close();
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  console.log('sidecar exit: ' + (await exited));
  app.close();
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
`;
}

const IMPORTS = `import { type End, type Listener, type ListenOptions, dial, listen } from 'geminio';
import { type TokenClaims, allow, definePlugin, deny, signToken } from 'geminio/plugins';
import { builtinPlugins, sidecarBin, version } from 'geminio-sidecar';`;

const EXPECTED_OUTPUT = (v: string) => [
  'rpc: echo hi',
  'plugin: consumer 3',
  `sidecar version: ${v} ${v}`,
  'builtins: allow-list,token,mtls-identity,rate-limit',
  'sidecar: HTTP/1.1 200 OK | app saw /hello',
  'sidecar exit: 0',
];

describe('npm packages geminio and geminio-sidecar', () => {
  beforeAll(() => {
    scratch = mkdtempSync(path.join(os.tmpdir(), 'geminio-packages-'));
    geminio = pack(repoRoot);
    sidecar = pack(path.join(repoRoot, 'packages/geminio-sidecar'));
  }, 300_000);

  afterAll(() => {
    if (scratch) rmSync(scratch, { recursive: true, force: true });
  });

  it('geminio holds the SDK and the plugin API only: no tests, no maps, no sidecar, no built-in plugins', () => {
    const files = geminio.files.map((f) => f.path).sort();
    for (const f of files)
      expect(f).toMatch(/^(LICENSE|README\.md|package\.json|dist\/(sdk|plugins)\/.+\.(js|d\.ts))$/);
    expect(files).toContain('dist/sdk/index.js');
    expect(files).toContain('dist/sdk/index.d.ts');
    expect(files).toContain('dist/plugins/index.js');
    expect(
      files.filter((f) => /test|\.map$|geminio-sidecar|allow-list|rate-limit|mtls|token\/index/.test(f)),
    ).toEqual([]);
  });

  it('geminio-sidecar holds the bundle (its entry and chunks), its bin, the example config and its exports', () => {
    const paths = sidecar.files.map((f) => f.path).sort();
    const chunks = paths.filter((f) => f.startsWith('dist/geminio-sidecar.chunks/'));
    expect(paths.filter((f) => !chunks.includes(f))).toEqual([
      'LICENSE',
      'README.md',
      'dist/geminio-sidecar.mjs',
      'index.d.ts',
      'index.js',
      'package.json',
      'sidecar.example.yaml',
    ]);
    for (const f of chunks) expect(f).toMatch(/^dist\/geminio-sidecar\.chunks\/[\w-]+\.mjs$/);
    // The code loaded only on demand is in its own chunks (scripts/bundle.ts).
    for (const name of ['otel', 'commands', 'pino-pretty'])
      expect(chunks.some((f) => f.includes(`/${name}-`))).toBe(true);
  });

  it('both carry the Apache-2.0 text, agree on the version, and point at no missing file or source map', () => {
    const dir = path.join(scratch, 'unpacked');
    for (const p of [geminio, sidecar]) {
      const to = path.join(dir, p.filename);
      mkdirSync(to, { recursive: true });
      execFileSync('tar', ['-xzf', path.join(scratch, p.filename), '-C', to]);
      const root = path.join(to, 'package');
      expect(readFileSync(path.join(root, 'LICENSE'), 'utf8')).toMatch(
        /Apache License\s+Version 2\.0, January 2004/,
      );
      const files = new Set(p.files.map((f) => f.path));
      for (const f of files) {
        if (!/\.(m?js|d\.ts)$/.test(f)) continue;
        const text = readFileSync(path.join(root, f), 'utf8');
        expect(text, f).not.toMatch(/sourceMappingURL/);
        // Every relative import resolves to a file in the package (the bundle's chunks are checked by running it:
        // its text quotes some).
        if (f.startsWith('dist/geminio-sidecar')) continue;
        for (const m of text.matchAll(/(?:from|import)\s*\(?\s*'(\.{1,2}\/[^']+)'/g)) {
          const target = path.posix.normalize(path.posix.join(path.posix.dirname(f), m[1] as string));
          const candidates = [target, target.replace(/\.js$/, '.d.ts')];
          expect(
            candidates.some((c) => files.has(c)),
            `${f} imports ${m[1]}`,
          ).toBe(true);
        }
      }
    }
    const manifests = [geminio, sidecar].map(
      (p) =>
        JSON.parse(readFileSync(path.join(dir, p.filename, 'package', 'package.json'), 'utf8')) as Record<
          string,
          // biome-ignore lint/suspicious/noExplicitAny: package.json fields
          any
        >,
    );
    const [g, s] = manifests as [
      Record<string, Record<string, unknown>>,
      Record<string, Record<string, unknown>>,
    ];
    expect(s.version).toBe(g.version);
    expect(g.bin).toBeUndefined();
    expect(s.bin).toEqual({ 'geminio-sidecar': 'dist/geminio-sidecar.mjs' });
    for (const m of manifests) {
      for (const [key, target] of Object.entries(m.exports as Record<string, unknown>)) {
        if (typeof target === 'string') continue;
        expect(Object.keys(target as object), `${m.name} exports ${key}`).toEqual(['types', 'default']);
      }
      expect(m.license).toBe('Apache-2.0');
      expect(m.dependencies ?? {}).toEqual({});
    }
  });

  it('names the same built-in plugins the sidecar carries', () => {
    const index = readFileSync(path.join(repoRoot, 'packages/geminio-sidecar/index.js'), 'utf8');
    const listed = /builtinPlugins = Object\.freeze\((\[[^\]]*\])\)/.exec(index)?.[1] as string;
    expect(JSON.parse(listed.replaceAll("'", '"'))).toEqual(Object.keys(BUILTIN_PLUGINS));
  });

  describe('installed offline into a scratch project', () => {
    let project = '';
    beforeAll(() => {
      project = path.join(scratch, 'consumer');
      mkdirSync(path.join(project, 'src'), { recursive: true });
      writeFileSync(path.join(project, 'package.json'), JSON.stringify({ name: 'consumer', private: true }));
      npm(
        [
          'install',
          '--offline',
          '--no-audit',
          '--no-fund',
          '--ignore-scripts',
          path.join(scratch, geminio.filename),
          path.join(scratch, sidecar.filename),
        ],
        project,
      );
      // Node's types from the repository (offline); TypeScript is the repository's too.
      mkdirSync(path.join(project, 'node_modules/@types'), { recursive: true });
      symlinkSync(
        path.join(repoRoot, 'node_modules/@types/node'),
        path.join(project, 'node_modules/@types/node'),
      );
      writeFileSync(path.join(project, 'src/esm.mts'), program(IMPORTS));
      writeFileSync(path.join(project, 'src/cjs.cts'), program(IMPORTS));
    }, 120_000);

    const configs: Array<[string, Record<string, unknown>, string[]]> = [];
    for (const interop of [true, false]) {
      const flags = { esModuleInterop: interop, allowSyntheticDefaultImports: interop };
      configs.push([
        `nodenext, esModuleInterop ${interop}`,
        { module: 'nodenext', ...flags },
        ['esm.mts', 'cjs.cts'],
      ]);
      // node16 has no require() of ESM (TypeScript allows it from nodenext on): CommonJS users there use import().
      configs.push([`node16, esModuleInterop ${interop}`, { module: 'node16', ...flags }, ['esm.mts']]);
      configs.push([
        `bundler, esModuleInterop ${interop}`,
        { module: 'esnext', moduleResolution: 'bundler', ...flags },
        ['esm.mts'],
      ]);
    }

    it.each(configs)('typechecks (%s) with skipLibCheck off', (name, options, files) => {
      const tsconfig = path.join(project, `tsconfig.${name.replace(/\W+/g, '-')}.json`);
      writeFileSync(
        tsconfig,
        JSON.stringify({
          compilerOptions: {
            target: 'es2022',
            lib: ['es2022'],
            types: ['node'],
            strict: true,
            skipLibCheck: false,
            noEmit: true,
            ...options,
          },
          files: files.map((f) => `src/${f}`),
        }),
      );
      const r = (() => {
        try {
          return execFileSync(process.execPath, [tsc, '-p', tsconfig], { cwd: project, encoding: 'utf8' });
        } catch (err) {
          return (err as { stdout: string }).stdout;
        }
      })();
      expect(r).toBe('');
    });

    it.each([
      ['ESM', 'esm.mjs'],
      ['CommonJS (require() of the ESM packages)', 'cjs.cjs'],
    ])(
      'runs a client, a server and the sidecar from the packages: %s',
      (_kind, file) => {
        execFileSync(
          process.execPath,
          [
            tsc,
            '--module',
            'nodenext',
            '--target',
            'es2022',
            '--types',
            'node',
            '--strict',
            '--outDir',
            'out',
            'src/esm.mts',
            'src/cjs.cts',
          ],
          { cwd: project, encoding: 'utf8' },
        );
        const out = execFileSync(process.execPath, [path.join('out', file)], {
          cwd: project,
          encoding: 'utf8',
        });
        const { version } = JSON.parse(readFileSync(path.join(repoRoot, 'package.json'), 'utf8')) as {
          version: string;
        };
        expect(out.trim().split('\n')).toEqual(EXPECTED_OUTPUT(version));
      },
      120_000,
    );
  });
});
