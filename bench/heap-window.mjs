/**
 * Heap bytes a process allocates in a window the bench chooses, noise-free (the machine's load does not change
 * them): a preload (`node --import bench/heap-window.mjs ...`; bench/grpc.ts --count adds it to both sidecars).
 * The first SIGUSR2 starts a v8.GCProfiler, the second stops it and appends one JSON line to HEAP_OUT (default
 * stderr): pid, name (the config file's name), gcs and their cost in µs (gcUs), bytes scavenges promoted to the old space (promotedBytes), allocated bytes (the used heap's growth between garbage
 * collections: used heap before each GC minus used heap after the one before, plus the growth since the last).
 * The bench divides it by the calls completed in the window (bench/heap-per-request.mjs counts HTTP/1.1 requests
 * itself; Node 20 has no diagnostics channel for HTTP/2 streams).
 */
import { appendFileSync } from 'node:fs';
import { GCProfiler, getHeapStatistics } from 'node:v8';

let profiler;
let startUsed = 0;

process.on('SIGUSR2', () => {
  if (!profiler) {
    profiler = new GCProfiler();
    profiler.start();
    startUsed = getHeapStatistics().used_heap_size;
    return;
  }
  const { statistics } = profiler.stop();
  profiler = undefined;
  const endUsed = getHeapStatistics().used_heap_size;
  let allocated = 0;
  let after = startUsed;
  let gcUs = 0;
  let promotedBytes = 0;
  const oldUsed = (h) => h.heapSpaceStatistics.find((x) => x.spaceName === 'old_space')?.spaceUsedSize ?? 0;
  for (const gc of statistics) {
    gcUs += gc.cost;
    if (gc.gcType === 'Scavenge') promotedBytes += oldUsed(gc.afterGC) - oldUsed(gc.beforeGC);
    allocated += gc.beforeGC.heapStatistics.usedHeapSize - after;
    after = gc.afterGC.heapStatistics.usedHeapSize;
  }
  allocated += endUsed - after;
  const config = process.argv[process.argv.indexOf('--config') + 1] ?? '';
  const line = {
    pid: process.pid,
    name: config.replace(/^.*\//, ''),
    gcs: statistics.length,
    gcUs,
    promotedBytes,
    allocatedBytes: allocated,
  };
  const text = `${JSON.stringify(line)}\n`;
  if (process.env.HEAP_OUT) appendFileSync(process.env.HEAP_OUT, text);
  else process.stderr.write(text);
});
