/**
 * Heap bytes allocated per HTTP request in a sidecar process, noise-free (the machine's load does not change it).
 * A preload for the sidecar (`node --import bench/heap-per-request.mjs ...`, or through the bench:
 * `BENCH_SIDECAR_NODE_ARGS="--import $PWD/bench/heap-per-request.mjs"`): it counts requests on the
 * `http.server.request.start` diagnostics channel (every request an http.Server of the process parses: the
 * outbound's listener, the inbound's per-stream servers) and, from the HEAP_SKIP-th on (default 800: the warm-up,
 * whose compilation and first allocations are not per request), sums the growth of the used heap between garbage
 * collections (v8.GCProfiler: used heap before each GC minus used heap after the one before; the growth since the
 * last GC is added at the end). At exit it appends one JSON line to HEAP_OUT (default stderr): pid, name
 * (HEAP_NAME or the config file's name), requests, allocated bytes, bytes per request.
 */
import { subscribe } from 'node:diagnostics_channel';
import { appendFileSync } from 'node:fs';
import { GCProfiler, getHeapStatistics } from 'node:v8';

const skip = Number(process.env.HEAP_SKIP ?? 800);
let requests = 0;
let profiler;
let startUsed = 0;

subscribe('http.server.request.start', () => {
  requests++;
  if (requests === skip) {
    profiler = new GCProfiler();
    profiler.start();
    startUsed = getHeapStatistics().used_heap_size;
  }
});

process.once('exit', () => {
  if (!profiler) return;
  const { statistics } = profiler.stop();
  const endUsed = getHeapStatistics().used_heap_size;
  let allocated = 0;
  let after = startUsed;
  for (const gc of statistics) {
    allocated += gc.beforeGC.heapStatistics.usedHeapSize - after;
    after = gc.afterGC.heapStatistics.usedHeapSize;
  }
  allocated += endUsed - after;
  const counted = requests - skip;
  const config = process.argv[process.argv.indexOf('--config') + 1] ?? '';
  const line = {
    pid: process.pid,
    name: process.env.HEAP_NAME ?? config.replace(/^.*\//, ''),
    requests: counted,
    gcs: statistics.length,
    allocatedBytes: allocated,
    bytesPerRequest: counted > 0 ? Math.round(allocated / counted) : null,
  };
  const text = `${JSON.stringify(line)}\n`;
  if (process.env.HEAP_OUT) appendFileSync(process.env.HEAP_OUT, text);
  else process.stderr.write(text);
});
