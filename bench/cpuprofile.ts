/**
 * Reading V8 `.cpuprofile` files (node --cpu-prof): self time per function with its heaviest callers, as a
 * Markdown table. Used by bench/profile.ts, bench/sidecar-http.ts and bench/grpc.ts.
 */
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { repoDir } from './lib.js';

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

/** For a bundle (esbuild marks each inlined module with a `// path/to/file.ts` line): line -> source module. */
const sections = new Map<string, Array<[number, string]>>();
function sourceOf(path: string, line: number): string | undefined {
  let marks = sections.get(path);
  if (!marks) {
    marks = [];
    try {
      const lines = readFileSync(path, 'utf8').split('\n');
      for (let i = 0; i < lines.length; i++) {
        const m = /^\/\/ (\S+\.(?:ts|js|mjs|cjs))$/.exec(lines[i]!);
        if (m) marks.push([i, m[1]!]);
      }
    } catch {
      // not readable: no mapping
    }
    sections.set(path, marks);
  }
  let found: string | undefined;
  for (const [at, name] of marks) {
    if (at > line) break;
    found = name;
  }
  return found;
}

function where(url: string, line: number): string {
  if (!url) return '';
  let path = url;
  let module: string | undefined;
  if (url.startsWith('file://')) {
    const abs = fileURLToPath(url);
    path = relative(repoDir, abs);
    if (abs.endsWith('.mjs') && line > 0) module = sourceOf(abs, line);
  }
  // Code loaded through tsx reports line 0 for everything: print the file alone then.
  const at = line > 0 ? `${path}:${line + 1}` : path;
  return module ? `${at} (${module})` : at;
}

/** Which code a sample's function belongs to: sdk/, sidecar/, a package, Node's own JS, or native/GC. */
function groupOf(name: string, url: string, loc: string): string {
  const m = /\((sdk|sidecar|bench)\/|\(node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(loc);
  if (m) return m[1] ? `${m[1]}/` : m[2]!;
  if (url.includes('/sdk/')) return 'sdk/';
  if (url.includes('/sidecar/')) return 'sidecar/';
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (pkg) return pkg[1]!;
  if (url.startsWith('node:')) return 'node: (JS of Node core)';
  if (name === '(garbage collector)') return 'GC';
  return 'native (syscalls, V8, program)';
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
  const groups = new Map<string, number>();
  for (let i = 0; i < profile.samples.length; i++) {
    const node = byId.get(profile.samples[i]!);
    const dt = profile.timeDeltas[i] ?? 0;
    if (!node) continue;
    total += dt;
    const f = node.callFrame;
    if (f.functionName === '(idle)') idle += dt;
    const loc = where(f.url, f.lineNumber);
    if (f.url.includes('/sdk/') || loc.includes('(sdk/')) sdk += dt;
    if (f.functionName !== '(idle)') {
      const g = groupOf(f.functionName, f.url, loc);
      groups.set(g, (groups.get(g) ?? 0) + dt);
    }
    const key = `${f.functionName || '(anonymous)'}  ${loc}`.trim();
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
    `non-idle self time by code: ${[...groups.entries()]
      .sort((a, b) => b[1] - a[1])
      .map(([g, t]) => `${g} ${((100 * t) / busy).toFixed(1)}%`)
      .join(', ')}`,
    '',
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

export function profilesIn(dir: string): string[] {
  try {
    return readdirSync(dir)
      .filter((f) => f.endsWith('.cpuprofile'))
      .map((f) => join(dir, f));
  } catch {
    return [];
  }
}

/**
 * The summary of the two sidecars' profiles under `profileDir` (its `outbound/` and `inbound/`, the first profile of
 * each): written to `profileDir/summary.md` under `title`, and printed.
 */
export function writeSidecarSummary(profileDir: string, title: string): void {
  const report = [`# ${title}`, ''];
  for (const side of ['outbound', 'inbound']) {
    const files = profilesIn(join(profileDir, side));
    if (files[0]) report.push(`## ${side} sidecar`, '', ...summarize(files[0], 25), '');
  }
  writeFileSync(join(profileDir, 'summary.md'), `${report.join('\n')}\n`);
  console.log(report.join('\n'));
}
