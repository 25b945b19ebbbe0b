/**
 * Heap bytes allocated per request, and writes per request, in a sidecar (or any Node HTTP proxy): a preload.
 *
 *   BENCH_SIDECAR_NODE_ARGS="--import ./bench/heap-per-request.mjs" \
 *     BENCH_SIDECAR_BUNDLE=FILE npx tsx bench/sidecar-http.ts --warmup 2000 --concurrency 64 --paths sidecar
 *
 * Counts requests on `http.server.request.start` (an outbound sidecar, a Node proxy) or `undici:request:create`
 * (an inbound sidecar: its requests to the app), whichever sees more; from the 800th request on it sums, with
 * v8.GCProfiler, the used heap's growth between GCs (the bytes allocated) and counts `net.Socket` writes
 * (`_writeGeneric`/`_writev` calls) and geminio stream writes (`geminio:stream:bytesOut`). On SIGTERM it prints
 * one JSON line on stderr: {heapPerReqBytes, socketWritesPerReq, streamWritesPerReq, requests}. BENCH_DEBUG=1
 * shows the sidecars' stderr. Driven by signals instead (bench/syscalls.ts --heap): the first SIGUSR2 starts the
 * count, the second prints it.
 */
import dc from 'node:diagnostics_channel';
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
function report() {
  if (!profiler) return;
  const heapNow = process.memoryUsage().heapUsed;
  const { statistics } = profiler.stop();
  let allocated = heapNow - heapAt0;
  for (const s of statistics)
    allocated += s.beforeGC.heapStatistics.usedHeapSize - s.afterGC.heapStatistics.usedHeapSize;
  const n = reqs() - reqsAt0;
  const r = (x) => Math.round(x * 100) / 100;
  process.stderr.write(
    `${JSON.stringify({ heapPerReqBytes: Math.round(allocated / n), socketWritesPerReq: r(socketWrites / n), streamWritesPerReq: r(streamWrites / n), requests: n })}\n`,
  );
}
