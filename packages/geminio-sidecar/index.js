// Where the sidecar of this package is, for programs that start it (a supervisor, a test harness):
//   spawn(process.execPath, [sidecarBin, 'run', '--config', file])
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** The absolute path of the single-file sidecar (the `geminio-sidecar` bin). */
export const sidecarBin = fileURLToPath(new URL('./dist/geminio-sidecar.mjs', import.meta.url));

/** The absolute path of the annotated example config (every key, with its default). */
export const exampleConfig = fileURLToPath(new URL('./sidecar.example.yaml', import.meta.url));

/** This package's version, which is also the bundled sidecar's `--version`. */
export const version = JSON.parse(readFileSync(new URL('./package.json', import.meta.url), 'utf8')).version;

/** The plugins compiled into the sidecar, named in a config as `path: builtin:<name>`. */
export const builtinPlugins = Object.freeze(['allow-list', 'token', 'mtls-identity', 'rate-limit']);
