/**
 * Tools the bench's anchors need from the Debian packages (nginx, iperf3): found on the PATH or in the usual sbin
 * directories, else installed with apt-get (only the bench does this, never a test; `apt-get update` once per run).
 * BENCH_NO_INSTALL=1 skips the install and the anchor is reported missing.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';

export function firstLine(err: unknown): string {
  return String((err as Error)?.message ?? err).split('\n')[0]!;
}

export function run(cmd: string, args: string[], timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) =>
    execFile(
      cmd,
      args,
      { timeout: timeoutMs, env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } },
      (err, stdout, stderr) =>
        err
          ? reject(new Error(`${cmd} ${args.join(' ')}: ${stderr || err.message}`))
          : resolve(`${stdout}${stderr}`),
    ),
  );
}

/** `name` on the PATH or in the usual sbin directories. */
export function findBinary(name: string): string | null {
  const dirs = [
    ...(process.env.PATH ?? '').split(':'),
    '/usr/sbin',
    '/usr/local/sbin',
    '/usr/bin',
    '/usr/local/nginx/sbin',
  ];
  for (const d of dirs) {
    if (d && existsSync(join(d, name))) return join(d, name);
  }
  return null;
}

let updated: Promise<string> | undefined;

/**
 * The binary `name`, installed from the first of `packages` that installs when absent. Resolves with its path, or
 * null and why (never throws).
 */
export async function ensureDebianBinary(
  name: string,
  packages: string[],
  log: (msg: string) => void,
): Promise<{ bin: string | null; note?: string }> {
  const found = findBinary(name);
  if (found) return { bin: found };
  if (process.env.BENCH_NO_INSTALL)
    return { bin: null, note: `${name} not installed (BENCH_NO_INSTALL set)` };
  log(`${name} not found: apt-get update && apt-get install -y ${packages.join(' (or) ')} (once) ...`);
  try {
    updated ??= run('apt-get', ['update'], 300_000);
    await updated;
    let lastErr: unknown;
    for (const pkg of packages) {
      try {
        await run('apt-get', ['install', '-y', '--no-install-recommends', pkg], 300_000);
        const bin = findBinary(name);
        if (bin) return { bin };
      } catch (err) {
        lastErr = err;
      }
    }
    throw lastErr ?? new Error(`installed, but no ${name} binary found`);
  } catch (err) {
    updated = undefined;
    log(`    ${name} install FAILED: ${firstLine(err)}`);
    return { bin: null, note: `${name} anchor unavailable: install failed (${firstLine(err)})` };
  }
}
