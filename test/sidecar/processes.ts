/**
 * Sidecar processes for the tests: the esbuild bundle (its entry and its chunks) copied alone into a temp dir,
 * spawned with plain node.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { copyFileSync, cpSync, mkdtempSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { bundle, chunksDirOf } from '../../scripts/bundle.js';
import { eventually } from '../helpers/wait.js';

export const root = new URL('../../', import.meta.url).pathname;

/** A free loopback port (for configs that need to know their ports before the process starts). */
export async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address() as net.AddressInfo;
  await new Promise((r) => s.close(r));
  return port;
}

export interface Child {
  proc: ChildProcess;
  /** stdout and stderr so far. */
  out: () => string;
  exited: Promise<number | null>;
}

/** Builds the bundle and copies it alone into a fresh directory: it must run with nothing but node. */
export async function bundledSidecar(): Promise<{ work: string; bundled: string }> {
  const work = mkdtempSync(join(tmpdir(), 'geminio-sidecar-test-'));
  const built = await bundle(join(root, 'dist', 'geminio-sidecar.mjs'));
  const bundled = join(work, 'geminio-sidecar.mjs');
  copyFileSync(built, bundled);
  cpSync(chunksDirOf(built), chunksDirOf(bundled), { recursive: true });
  return { work, bundled };
}

const children: ChildProcess[] = [];

/** Spawns node with `args` (killed by killAll). */
export function start(args: string[], cwd: string, env: NodeJS.ProcessEnv = {}): Child {
  const proc = spawn(process.execPath, args, {
    cwd,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, CI: '', ...env },
  });
  children.push(proc);
  let out = '';
  proc.stdout!.on('data', (c: Buffer) => (out += c));
  proc.stderr!.on('data', (c: Buffer) => (out += c));
  const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
  return { proc, out: () => out, exited };
}

/** Kills what start() spawned and is still running. */
export function killAll(): void {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
}

export async function waitReady(admin: number, child: Child, timeoutMs = 15_000): Promise<void> {
  await eventually(
    async () => (await request(`http://127.0.0.1:${admin}/readyz`)).statusCode === 200,
    timeoutMs,
    `readiness; output:\n${child.out()}`,
  );
}
