/**
 * Memory of a real sidecar process under the abuse cases of docs/SIDECAR.md ("Limits under abuse"): the bundle
 * (dist/geminio-sidecar.mjs, built here) runs as the outbound and the inbound process in front of a local app,
 * and the RSS of each (VmRSS from /proc) is read at baseline and while the abuse is held open:
 *   - 1,000 silent connections (connected, nothing sent),
 *   - 1,000 connections each holding an unfinished 30 KiB request head (just under maxHeaderBytes),
 *   - 256 slow uploads (a head and 10 body bytes, then nothing; the pool has 256 streams).
 * Run: `npx tsx bench/abuse-memory.ts` (Linux). Prints one JSON line per case.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { bundle } from '../scripts/bundle.js';
import { freePort, sidecarEnv } from './lib.js';

const delay = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

function rssMiB(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
  return Math.round((kb / 1024) * 10) / 10;
}

async function waitPort(port: number): Promise<void> {
  for (let i = 0; i < 200; i++) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1');
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    await delay(50);
  }
  throw new Error(`port ${port} did not open`);
}

function open(port: number, n: number, first?: string | Buffer): Promise<net.Socket[]> {
  return Promise.all(
    Array.from(
      { length: n },
      () =>
        new Promise<net.Socket>((resolve) => {
          const s = net.connect(port, '127.0.0.1');
          s.on('error', () => {});
          s.once('connect', () => {
            if (first) s.write(first);
            resolve(s);
          });
        }),
    ),
  );
}

async function main(): Promise<void> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'geminio-abuse-memory-'));
  const bin = await bundle(path.join(dir, 'geminio-sidecar.mjs'));
  const app = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => res.end('ok'));
  });
  await new Promise<void>((r) => app.listen(0, '127.0.0.1', r));
  const appPort = (app.address() as net.AddressInfo).port;
  const [geminio, web] = [await freePort(), await freePort()];
  const inboundCfg = {
    name: 'inbound',
    log: { level: 'error' },
    admin: { listen: '127.0.0.1:0' },
    inbound: { listen: `127.0.0.1:${geminio}` },
    services: { app: { target: `http://127.0.0.1:${appPort}` } },
  };
  const outboundCfg = {
    name: 'outbound',
    log: { level: 'error' },
    admin: { listen: '127.0.0.1:0' },
    upstreams: { up: { address: `127.0.0.1:${geminio}` } },
    outbound: { http: [{ name: 'web', listen: `127.0.0.1:${web}`, upstream: 'up', service: 'app' }] },
  };
  writeFileSync(path.join(dir, 'in.json'), JSON.stringify(inboundCfg));
  writeFileSync(path.join(dir, 'out.json'), JSON.stringify(outboundCfg));
  const procs: ChildProcess[] = [];
  const run = (file: string) => {
    const p = spawn(process.execPath, [bin, 'run', '--config', path.join(dir, file)], {
      stdio: 'inherit',
      env: { ...process.env, ...sidecarEnv() },
    });
    procs.push(p);
    return p;
  };
  try {
    const inbound = run('in.json');
    await waitPort(geminio);
    const outbound = run('out.json');
    await waitPort(web);
    // Warm both up with a few requests through the whole path.
    for (let i = 0; i < 50; i++) await fetch(`http://127.0.0.1:${web}/warm`).then((r) => r.text());
    await delay(500);
    const base = { outbound: rssMiB(outbound.pid!), inbound: rssMiB(inbound.pid!) };
    console.log(JSON.stringify({ case: 'baseline', rssMiB: base }));

    const cases: Array<[string, number, string | Buffer | undefined]> = [
      ['1,000 silent connections', 1_000, undefined],
      ['1,000 unfinished 30 KiB heads', 1_000, `GET / HTTP/1.1\r\nx-pad: ${'a'.repeat(30 * 1024)}`],
      [
        '256 slow uploads (head + 10 bytes)',
        256,
        'POST /u HTTP/1.1\r\nhost: a\r\ncontent-length: 1000000\r\n\r\n0123456789',
      ],
    ];
    for (const [name, n, first] of cases) {
      const sockets = await open(web, n, first);
      await delay(2_000);
      const held = { outbound: rssMiB(outbound.pid!), inbound: rssMiB(inbound.pid!) };
      const open1 = sockets.filter((s) => !s.destroyed).length;
      console.log(
        JSON.stringify({
          case: name,
          rssMiB: held,
          overBaselineMiB: {
            outbound: Math.round((held.outbound - base.outbound) * 10) / 10,
            inbound: Math.round((held.inbound - base.inbound) * 10) / 10,
          },
          stillOpenAfter2s: open1,
        }),
      );
      for (const s of sockets) s.destroy();
      await delay(1_000);
    }
  } finally {
    for (const p of procs) p.kill('SIGKILL');
    app.close();
  }
}

await main();
