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
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { profilesIn, summarize } from './cpuprofile.js';
import { benchDir, buildGoBench, JsonChild, tsxArgs } from './lib.js';

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
