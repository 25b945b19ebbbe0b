/**
 * Builds the single-file bundle dist/geminio-sidecar.mjs: every dependency inlined, runs with nothing but `node`.
 * Some dependencies are CommonJS and call `require` for Node built-ins, which an ESM file does not have: the
 * banner gives the bundle one (createRequire), under a name no bundled module declares.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = fileURLToPath(new URL('..', import.meta.url));

/** Bundles sidecar/cli.ts into `outfile` (default dist/geminio-sidecar.mjs). */
export async function bundle(outfile = `${root}dist/geminio-sidecar.mjs`): Promise<string> {
  const { version } = JSON.parse(readFileSync(`${root}package.json`, 'utf8')) as { version: string };
  await build({
    entryPoints: [`${root}sidecar/cli.ts`],
    outfile,
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
  });
  return outfile;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const out = await bundle(process.argv[2]);
  process.stdout.write(`bundled ${out}\n`);
}
