/**
 * Heap bytes allocated per request, and writes per request, in a sidecar (or any Node HTTP proxy): a preload.
 *
 *   BENCH_SIDECAR_NODE_ARGS="--import ./bench/heap-per-request.mjs" \
 *     BENCH_SIDECAR_BUNDLE=FILE npx tsx bench/sidecar-http.ts --warmup 2000 --concurrency 64 --paths sidecar
 *
 * Counts requests on `http.server.request.start` (an outbound sidecar, a Node proxy) or `undici:request:create`
 * (an inbound sidecar: its requests to the app), whichever sees more; from the 800th request on it sums, with
 * v8.GCProfiler, the used heap's growth between GCs (the bytes allocated) and counts `net.Socket` writes
 * (`_writeGeneric`/`_writev` calls) and geminio stream writes (`geminio:stream:bytesOut`), and the garbage
 * collections in the window: scavenges and full (mark-compact) collections per 1,000 requests, their mean cost in
 * µs, and the bytes each request left in the old space through scavenges (promotedPerReqBytes: the old space's
 * growth across each scavenge; what outlived its request), with the young generation's size at the end
 * (newSpaceBytes: both semi-spaces). On SIGTERM it prints one JSON line on stderr: {heapPerReqBytes,
 * promotedPerReqBytes, scavengesPer1k, scavengeUs, fullGcsPer1k, fullGcUs, newSpaceBytes, socketWritesPerReq,
 * streamWritesPerReq, requests} (or as it exits). BENCH_DEBUG=1
 * shows the sidecars' stderr. Driven by signals instead (bench/syscalls.ts --heap): the first SIGUSR2 starts the
 * count, the second prints it.
 */
import dc from 'node:diagnostics_channel';
import { writeSync } from 'node:fs';
import net from 'node:net';
import v8 from 'node:v8';

const START = 800;
let serverReqs = 0;
let undiciReqs = 0;
const reqs = () => Math.max(serverReqs, undiciReqs);
let profiler = null;
let heapAt0 = 0;
let reqsAt0 = 0;
let socketWrites = 0;
let streamWrites = 0;

let bySignal = false;
function maybeStart() {
  if (profiler || bySignal || reqs() < START) return;
  begin();
}
function begin() {
  profiler = new v8.GCProfiler();
  profiler.start();
  heapAt0 = process.memoryUsage().heapUsed;
  reqsAt0 = reqs();
  socketWrites = 0;
  streamWrites = 0;
}
dc.subscribe('http.server.request.start', () => {
  serverReqs++;
  maybeStart();
});
dc.subscribe('undici:request:create', () => {
  undiciReqs++;
  maybeStart();
});
dc.subscribe('geminio:stream:bytesOut', () => {
  streamWrites++;
});
for (const m of ['_writeGeneric', '_writev']) {
  const orig = net.Socket.prototype[m];
  net.Socket.prototype[m] = function (...args) {
    socketWrites++;
    return orig.apply(this, args);
  };
}

process.on('SIGUSR2', () => {
  if (!bySignal || !profiler) {
    bySignal = true;
    profiler?.stop();
    profiler = null;
    begin();
  } else {
    report();
    profiler = null;
  }
});
process.prependListener('SIGTERM', () => report());
// A process stopped otherwise (bench/http-proxy.ts exits when its stdin ends) reports as it exits.
process.on('exit', () => report());
function report() {
  if (!profiler) return;
  const heapNow = process.memoryUsage().heapUsed;
  const { statistics } = profiler.stop();
  profiler = null;
  let allocated = heapNow - heapAt0;
  const space = (h, name) => h.heapSpaceStatistics.find((x) => x.spaceName === name);
  let promoted = 0;
  const scavenge = { n: 0, us: 0 };
  const full = { n: 0, us: 0 };
  for (const s of statistics) {
    allocated += s.beforeGC.heapStatistics.usedHeapSize - s.afterGC.heapStatistics.usedHeapSize;
    if (s.gcType === 'Scavenge') {
      scavenge.n++;
      scavenge.us += s.cost;
      promoted += space(s.afterGC, 'old_space').spaceUsedSize - space(s.beforeGC, 'old_space').spaceUsedSize;
    } else if (s.gcType === 'MarkSweepCompact') {
      full.n++;
      full.us += s.cost;
    }
  }
  const n = reqs() - reqsAt0;
  const r = (x) => Math.round(x * 100) / 100;
  const line = {
    heapPerReqBytes: Math.round(allocated / n),
    promotedPerReqBytes: r(promoted / n),
    scavengesPer1k: r((scavenge.n * 1000) / n),
    scavengeUs: Math.round(scavenge.us / (scavenge.n || 1)),
    fullGcsPer1k: r((full.n * 1000) / n),
    fullGcUs: Math.round(full.us / (full.n || 1)),
    newSpaceBytes: v8.getHeapSpaceStatistics().find((x) => x.space_name === 'new_space')?.space_size ?? 0,
    socketWritesPerReq: r(socketWrites / n),
    streamWritesPerReq: r(streamWrites / n),
    requests: n,
  };
  writeSync(2, `${JSON.stringify(line)}\n`);
}
