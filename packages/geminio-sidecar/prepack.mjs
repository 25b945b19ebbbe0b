// `npm pack` / `npm publish` of geminio-sidecar run this first: it bundles the sidecar from the repository's sources
// (scripts/bundle.ts, with the repository's devDependencies: run `npm ci` at the root first) and copies in the files
// kept once at the root (LICENSE, the example config). The versions of the two packages must agree.
import { execFileSync } from 'node:child_process';
import { copyFileSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const here = fileURLToPath(new URL('.', import.meta.url));
const root = fileURLToPath(new URL('../..', import.meta.url));
const version = (file) => JSON.parse(readFileSync(file, 'utf8')).version;
if (version(`${here}package.json`) !== version(`${root}package.json`)) {
  throw new Error(
    'geminio-sidecar: package.json version differs from the root package.json (the sidecar reports the latter)',
  );
}
execFileSync(
  `${root}node_modules/.bin/tsx`,
  [`${root}scripts/bundle.ts`, `${here}dist/geminio-sidecar.mjs`],
  {
    stdio: ['ignore', process.stderr, 'inherit'], // stdout stays clean for npm pack --json
  },
);
copyFileSync(`${root}LICENSE`, `${here}LICENSE`);
copyFileSync(`${root}deploy/sidecar.example.yaml`, `${here}sidecar.example.yaml`);
