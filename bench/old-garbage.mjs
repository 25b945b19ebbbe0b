/**
 * What the requests leave behind in the old generation (promoted, then dead), by V8 object type: a preload for
 * V8's object statistics, which V8 prints (on stdout) at a full GC the process asks for.
 *
 *   BENCH_DEBUG=1 BENCH_SIDECAR_NODE_ARGS="--expose-gc --track-gc-object-stats --trace-gc-object-stats \
 *     --import ./bench/old-garbage.mjs" npx tsx bench/sidecar-http.ts --warmup 4000 --concurrency 1 --paths sidecar
 *
 * Counts requests as bench/heap-per-request.mjs does; at the OLD_GARBAGE_FROM-th (default 3000) it runs a full GC
 * (the old generation then holds only live objects), and OLD_GARBAGE_REQUESTS (default 2000) requests later two
 * minor GCs (the young garbage goes) and a full one. The `"key": "dead"` lines of that last GC's statistics (one
 * JSON object per V8 instance type: `overall` bytes, `count`) are what those requests promoted and dropped; divide
 * by OLD_GARBAGE_REQUESTS. Each process's isolate is the `"isolate"` field; `OLD-GARBAGE` lines mark the window.
 */
import dc from 'node:diagnostics_channel';
import { writeSync } from 'node:fs';

const FROM = Number(process.env.OLD_GARBAGE_FROM ?? 3000);
const N = Number(process.env.OLD_GARBAGE_REQUESTS ?? 2000);
let serverReqs = 0;
let undiciReqs = 0;
let state = 0;
const gc = globalThis.gc;
if (typeof gc !== 'function') throw new Error('bench/old-garbage.mjs needs --expose-gc');

function tick() {
  const n = Math.max(serverReqs, undiciReqs);
  if (state === 0 && n >= FROM) {
    state = 1;
    writeSync(1, `OLD-GARBAGE start ${process.pid} ${n}\n`);
    gc();
  } else if (state === 1 && n >= FROM + N) {
    state = 2;
    gc({ type: 'minor' });
    gc({ type: 'minor' });
    writeSync(1, `OLD-GARBAGE end ${process.pid} ${n}\n`);
    gc();
  }
}
dc.subscribe('http.server.request.start', () => {
  serverReqs++;
  tick();
});
dc.subscribe('undici:request:create', () => {
  undiciReqs++;
  tick();
});
