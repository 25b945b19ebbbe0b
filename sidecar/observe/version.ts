/** The sidecar's version, for --version and geminio_sidecar_build_info. */
import { readFileSync } from 'node:fs';

declare const __GEMINIO_SIDECAR_VERSION__: string | undefined;

/** The package version: baked in by the bundle, read from package.json otherwise. */
function version(): string {
  if (typeof __GEMINIO_SIDECAR_VERSION__ === 'string') return __GEMINIO_SIDECAR_VERSION__;
  for (const rel of ['../../package.json', '../../../package.json']) {
    try {
      return (JSON.parse(readFileSync(new URL(rel, import.meta.url), 'utf8')) as { version: string }).version;
    } catch {
      // try the next place (sources run from sidecar/observe/, compiled ones from dist/sidecar/observe/)
    }
  }
  return 'unknown';
}

export const SIDECAR_VERSION = version();
