/**
 * CPU profiles of the SDK on the RPC, publish and stream rows, and their top self-time functions:
 *
 *   npx tsx bench/profile.ts [--quick] [case ...]      cases: rpc1 rpc64 publish1 stream1 stream16 openclose64
 *
 * Each case runs bench/worker.ts under `node --cpu-prof` (client process) with BENCH_SERVER_NODE_ARGS set so the
 * server child (bench/server.ts) is profiled too. Profiles land in bench/results/profiles/<case>/{client,server}/
 * (open them in Chrome DevTools or speedscope); the summary is printed and written to
 * bench/results/profiles/summary.md. Self time is aggregated per function (name + file:line); percentages are
 * of all samples of that process, "(idle)" included, and "non-idle %" excludes idle.
 */
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { benchDir, buildGoBench, JsonChild, repoDir, tsxArgs } from './lib.js';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

const quick = process.argv.includes('--quick');
const timing = quick ? { warmupMs: 300, durationMs: 1_000 } : { warmupMs: 1_000, durationMs: 3_000 };
const all: Record<string, [string, Record<string, unknown>]> = {
  rpc1: ['rpc', { inflight: 1 }],
  rpc64: ['rpc', { inflight: 64 }],
  publish1: ['publish', { inflight: 1 }],
  stream1: ['stream', { streams: 1 }],
  stream16: ['stream', { streams: 16 }],
  openclose64: ['openclose', { inflight: 64 }],
};
const picked = process.argv.slice(2).filter((a) => !a.startsWith('--'));
const names = picked.length > 0 ? picked : ['rpc1', 'rpc64', 'publish1', 'stream1'];
const root = join(benchDir, 'results', 'profiles');

function where(url: string, line: number): string {
  if (!url) return '';
  let path = url;
  if (url.startsWith('file://')) path = relative(repoDir, fileURLToPath(url));
  // Code loaded through tsx reports line 0 for everything: print the file alone then.
  return line > 0 ? `${path}:${line + 1}` : path;
}

export function summarize(file: string, top = 15): string[] {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const self = new Map<string, number>();
  const via = new Map<string, Map<string, number>>();
  let total = 0;
  let idle = 0;
  let sdk = 0;
  for (let i = 0; i < profile.samples.length; i++) {
    const node = byId.get(profile.samples[i]!);
    const dt = profile.timeDeltas[i] ?? 0;
    if (!node) continue;
    total += dt;
    const f = node.callFrame;
    if (f.functionName === '(idle)') idle += dt;
    if (f.url.includes('/sdk/')) sdk += dt;
    const key = `${f.functionName || '(anonymous)'}  ${where(f.url, f.lineNumber)}`.trim();
    self.set(key, (self.get(key) ?? 0) + dt);
    const chain: string[] = [];
    for (let p = parent.get(node.id); p !== undefined && chain.length < 3; p = parent.get(p)) {
      chain.push(byId.get(p)?.callFrame.functionName || '(anonymous)');
    }
    const callers = via.get(key) ?? new Map<string, number>();
    const c = chain.join(' < ');
    callers.set(c, (callers.get(c) ?? 0) + dt);
    via.set(key, callers);
  }
  const busy = total - idle;
  const lines = [
    `samples ${(total / 1e6).toFixed(2)} s, idle ${((100 * idle) / total).toFixed(1)}%, ` +
      `self time in sdk/ ${((100 * sdk) / busy).toFixed(1)}% of non-idle`,
    '| self % | non-idle % | function  location | heaviest callers |',
    '|---:|---:|---|---|',
  ];
  const sorted = [...self.entries()].sort((a, b) => b[1] - a[1]).slice(0, top);
  for (const [key, t] of sorted) {
    const nonIdle = key.startsWith('(idle)') ? '-' : `${((100 * t) / busy).toFixed(1)}`;
    const callers = [...(via.get(key) ?? new Map<string, number>()).entries()].sort((a, b) => b[1] - a[1]);
    const heaviest = callers[0]?.[0] ? `< ${callers[0][0]}` : '';
    const name = key.replaceAll('|', '\\|');
    lines.push(`| ${((100 * t) / total).toFixed(1)} | ${nonIdle} | \`${name}\` | ${heaviest} |`);
  }
  return lines;
}

function profilesIn(dir: string): string[] {
  try {
    return readdirSync(dir)
      .filter((f) => f.endsWith('.cpuprofile'))
      .map((f) => join(dir, f));
  } catch {
    return [];
  }
}

await buildGoBench().catch(() => {});
const report: string[] = [`# CPU profiles (${quick ? 'quick' : 'full'} timing), node ${process.version}`, ''];
for (const name of names) {
  const spec = all[name];
  if (!spec) throw new Error(`unknown case ${name}; one of ${Object.keys(all).join(', ')}`);
  const [kase, opts] = spec;
  const dir = join(root, name);
  rmSync(dir, { recursive: true, force: true });
  const clientDir = join(dir, 'client');
  const serverDir = join(dir, 'server');
  mkdirSync(clientDir, { recursive: true });
  mkdirSync(serverDir, { recursive: true });
  process.stderr.write(`profiling ${name} ...\n`);
  const child = new JsonChild(
    process.execPath,
    [
      ...tsxArgs('worker.ts', ['--cpu-prof', `--cpu-prof-dir=${clientDir}`]),
      kase,
      JSON.stringify({ ...opts, ...timing }),
    ],
    { env: { BENCH_SERVER_NODE_ARGS: `--cpu-prof --cpu-prof-dir=${serverDir}` } },
  );
  const result = await child.next(120_000);
  await child.stop();
  report.push(`## ${name}: ${kase} ${JSON.stringify(opts)}`, '', `result: ${JSON.stringify(result)}`, '');
  for (const [side, d] of [
    ['client (worker) process', clientDir],
    ['server process', serverDir],
  ] as const) {
    // The worker spawns one child for its server; tsx may add none. Take the largest profile per directory.
    const files = profilesIn(d).sort((a, b) => readFileSync(b).length - readFileSync(a).length);
    if (files.length === 0) continue;
    report.push(`### ${side}`, '', ...summarize(files[0]!), '');
  }
}
mkdirSync(root, { recursive: true });
writeFileSync(join(root, 'summary.md'), `${report.join('\n')}\n`);
console.log(report.join('\n'));
process.exit(0);
