/**
 * Builds the bundle dist/geminio-sidecar.mjs: every dependency inlined, runs with nothing but `node`. The entry
 * file is what `node` runs; the code it loads only on demand (OpenTelemetry when tracing is on, yargs for the full
 * command line, pino-pretty for pretty logs, the demo) is in chunks beside it, in dist/geminio-sidecar.chunks/,
 * so a sidecar that never uses them never reads them (V8 keeps the whole source of every module it loads: 1.2 MB
 * less RSS idle, docs/SIDECAR.md "Memory"). Ship the entry and its chunks directory together.
 * Some dependencies are CommonJS and call `require` for Node built-ins, which an ESM file does not have: the
 * banner gives each file one (createRequire), under a name no bundled module declares.
 */
import { readdirSync, readFileSync, rmSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build, type Plugin } from 'esbuild';

const root = fileURLToPath(new URL('..', import.meta.url));

const BUILTINS = new Set(builtinModules);

/** Exports of a built-in that are costly to read and that no module of the bundle imports by name. */
const NOT_READ: Record<string, string[]> = { 'node:tls': ['rootCertificates'] };

/**
 * Node's built-in modules through `require` instead of `import`, as the CommonJS dependencies already load them.
 * Importing a built-in from ESM makes Node build its ES module facade, which reads every export once: `node:tls`
 * then parses the whole root CA store into `tls.rootCertificates` (about 150 certificates as strings), and each
 * facade keeps its own copy of the exports. Each built-in becomes a small ES module here: its default export is
 * what `require` returns, and its named exports are that object's properties, read once when the module is first
 * imported, as Node's own facade reads them (the names are those of the Node running the build), except those in
 * NOT_READ: `tls.rootCertificates` is never read, so importing it by name fails the build. Not esbuild's CommonJS
 * interop (`__toESM`), which copies every property at each import site: hot enough that TurboFan compiled it at
 * startup, 5 MB more RSS than it saved. All told 1.0 MB less RSS idle (docs/SIDECAR.md, "Memory").
 */
const builtinsByRequire: Plugin = {
  name: 'builtins-by-require',
  setup(b) {
    b.onResolve({ filter: /^[a-z_/:0-9]+$/ }, (args) => {
      if (args.kind !== 'import-statement' && args.kind !== 'dynamic-import') return undefined;
      const name = args.path.startsWith('node:') ? args.path.slice(5) : args.path;
      if (!BUILTINS.has(name)) return undefined;
      return { path: `node:${name}`, namespace: 'builtin-by-require' };
    });
    b.onLoad({ filter: /.*/, namespace: 'builtin-by-require' }, async (args) => {
      const mod = (await import(args.path)) as Record<string, unknown>;
      const skip = NOT_READ[args.path] ?? [];
      const names = Object.keys(mod).filter(
        (k) => k !== 'default' && /^[A-Za-z_$][\w$]*$/.test(k) && !skip.includes(k),
      );
      const lines = [`const m = require(${JSON.stringify(args.path)});`, 'export default m;'];
      for (const n of names) lines.push(`export const ${n} = m.${n};`);
      return { contents: lines.join('\n'), loader: 'js' };
    });
  },
};

/** The directory of an entry file's chunks: dist/geminio-sidecar.mjs -> dist/geminio-sidecar.chunks. */
export function chunksDirOf(outfile: string): string {
  return join(dirname(outfile), `${basename(outfile, '.mjs')}.chunks`);
}

/**
 * Bundles sidecar/cli.ts into `outfile` (default dist/geminio-sidecar.mjs, a name ending in .mjs) and its chunks
 * into chunksDirOf(outfile); chunks of an earlier build that this one does not write are removed (chunk names
 * carry a hash of their content, so two builds of the same sources at once write the same files). Returns
 * `outfile`.
 */
export async function bundle(outfile = `${root}dist/geminio-sidecar.mjs`): Promise<string> {
  if (!outfile.endsWith('.mjs')) throw new Error(`bundle: ${outfile}: the entry's name must end in .mjs`);
  const { version } = JSON.parse(readFileSync(`${root}package.json`, 'utf8')) as { version: string };
  outfile = resolve(outfile);
  const chunks = chunksDirOf(outfile);
  const result = await build({
    entryPoints: { [basename(outfile, '.mjs')]: `${root}sidecar/cli.ts` },
    outdir: dirname(outfile),
    // Each dynamic import() is its own chunk, and code shared by the entry and a chunk another chunk.
    splitting: true,
    chunkNames: `${basename(chunks)}/[name]-[hash]`,
    outExtension: { '.js': '.mjs' },
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    // Whitespace and syntax only (names stay, so stack traces keep function names): V8 keeps the whole source in
    // memory, and comments with non-ASCII text made it a two-byte string. ASCII output, a third smaller: 3 MiB less
    // RSS idle (docs/SIDECAR.md, "Memory").
    minifyWhitespace: true,
    minifySyntax: true,
    charset: 'ascii',
    sourcemap: false,
    legalComments: 'none',
    define: { __GEMINIO_SIDECAR_VERSION__: JSON.stringify(version) },
    banner: {
      js: "import { createRequire as __geminioCreateRequire } from 'node:module';\nconst require = __geminioCreateRequire(import.meta.url);",
    },
    logLevel: 'warning',
    plugins: [builtinsByRequire],
    metafile: true,
  });
  const written = new Set(Object.keys(result.metafile.outputs).map((f) => resolve(f)));
  for (const f of readdirSync(chunks))
    if (!written.has(join(chunks, f))) rmSync(join(chunks, f), { force: true });
  return outfile;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const out = await bundle(process.argv[2]);
  process.stdout.write(`bundled ${out}\n`);
}
