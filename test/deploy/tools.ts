/**
 * The external tools the deploy tests use, found on the PATH or where test/deploy/install-tools.sh puts them
 * (under GEMINIO_CI_CACHE, default /var/cache/geminio-ci). Outside CI a missing tool skips its test with the reason;
 * with CI=true it fails it (the suite must really run in CI).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';

export const CACHE = process.env.GEMINIO_CI_CACHE ?? '/var/cache/geminio-ci';
export const inCI = Boolean(process.env.CI);
export const repoRoot = path.resolve(import.meta.dirname, '..', '..');

/** The absolute path of `name`, or undefined. */
export function findTool(name: string): string | undefined {
  for (const dir of [...(process.env.PATH ?? '').split(':'), `${CACHE}/bin`, `${CACHE}/venv/bin`]) {
    if (!dir) continue;
    const p = path.join(dir, name);
    if (existsSync(p)) return p;
  }
  return undefined;
}

/** Why the tools cannot be used, or undefined when all are there. */
export function whyMissing(names: string[]): string | undefined {
  const missing = names.filter((n) => !findTool(n));
  if (missing.length === 0) return undefined;
  return `${missing.join(', ')} not installed (bash test/deploy/install-tools.sh installs them)`;
}

/** Runs a tool; returns its exit status and output (stdout + stderr) without throwing. */
export function run(
  cmd: string,
  args: string[],
  options: { cwd?: string; input?: string; env?: NodeJS.ProcessEnv } = {},
): { status: number | null; out: string } {
  const r = spawnSync(cmd, args, {
    cwd: options.cwd ?? repoRoot,
    input: options.input,
    env: options.env ?? process.env,
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
  });
  if (r.error) return { status: null, out: String(r.error) };
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

/** Runs a tool and returns stdout; throws with its output when it fails. */
export function runOk(
  cmd: string,
  args: string[],
  options: { cwd?: string; env?: NodeJS.ProcessEnv } = {},
): string {
  return execFileSync(cmd, args, {
    cwd: options.cwd ?? repoRoot,
    env: options.env ?? process.env,
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
}
