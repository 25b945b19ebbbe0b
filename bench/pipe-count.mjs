/**
 * Where a sidecar's requests wait at 64 connections, and how they cross its sockets: a preload.
 *
 *   BENCH_DEBUG=1 BENCH_SIDECAR_NODE_ARGS="--import ./bench/pipe-count.mjs" \
 *     BENCH_SIDECAR_BUNDLE=FILE npx tsx bench/sidecar-http.ts --warmup 2000 --concurrency 64 --paths sidecar
 *
 * From the 3000th request on (the warm-up), until the last 250 ms tick in which requests still completed, it counts:
 * - requests in flight, time-averaged: in the outbound from `http.server.request.start` to
 *   `http.server.response.finish` (so 64 minus it is what sits in the load generator), in the inbound from
 *   `undici:request:create` to `undici:request:trailers` (its requests to the app). Little's law: the difference
 *   between the two sidecars' figures is what is between them (the outbound's own work, the geminio connection,
 *   the inbound before it dispatches and after the answer);
 * - per socket, `net.Socket` writes (`_writeGeneric`/`_writev` calls) and bytes, and reads (chunks pushed) and
 *   bytes; the socket with the most bytes is the geminio connection, the others are summed;
 * - the event loop's utilization (`performance.eventLoopUtilization`: the share of the time it was not waiting
 *   in epoll) over the same span.
 * On SIGTERM or exit it prints one JSON line on stderr (`NODE_OPTIONS="--import $PWD/bench/pipe-count.mjs"` puts it in
 * every process of a path: the app and a Node proxy count `http.server.*`, the load generator `undici:*`). Counts do not depend much on the machine's load; the in-flight
 * split and the loop's utilization do, a little (a process preempted mid-turn holds its requests longer).
 */
import dc from 'node:diagnostics_channel';
import net from 'node:net';
import { performance } from 'node:perf_hooks';

const START = 3000;
let done = 0;
/** Requests in flight as a server (`http.server.*`) and as a client (`undici:*`), and their time integrals. */
const inflight = { server: 0, client: 0 };
const area = { server: 0, client: 0 };
const finished = { server: 0, client: 0 };
let lastT = 0;
let counting = false;
let t0 = 0;
let elu0;
let done0 = 0;
/** The snapshot of the last tick that saw requests complete: the span reported ends there. */
let last;
const sockets = new Map();

function tick() {
  const now = performance.now();
  if (counting) {
    area.server += inflight.server * (now - lastT);
    area.client += inflight.client * (now - lastT);
  }
  lastT = now;
}
function startReq(side) {
  tick();
  inflight[side]++;
}
function endReq(side) {
  tick();
  inflight[side]--;
  finished[side]++;
  done = Math.max(finished.server, finished.client);
  if (!counting && done >= START) {
    counting = true;
    t0 = performance.now();
    elu0 = performance.eventLoopUtilization();
    done0 = done;
    area.server = area.client = 0;
    for (const s of sockets.values()) s.writes = s.wbytes = s.reads = s.rbytes = 0;
  }
}
dc.subscribe('http.server.request.start', () => startReq('server'));
dc.subscribe('http.server.response.finish', () => endReq('server'));
dc.subscribe('undici:request:create', () => startReq('client'));
dc.subscribe('undici:request:trailers', () => endReq('client'));
dc.subscribe('undici:request:error', () => endReq('client'));

function stat(sock) {
  let s = sockets.get(sock);
  if (!s) sockets.set(sock, (s = { writes: 0, wbytes: 0, reads: 0, rbytes: 0 }));
  return s;
}
const origGeneric = net.Socket.prototype._writeGeneric;
net.Socket.prototype._writeGeneric = function (writev, data, encoding, cb) {
  const s = stat(this);
  s.writes++;
  if (writev) for (const c of data) s.wbytes += c.chunk.length;
  else s.wbytes += data.length;
  return origGeneric.call(this, writev, data, encoding, cb);
};
const origPush = net.Socket.prototype.push;
net.Socket.prototype.push = function (chunk, encoding) {
  if (chunk) {
    const s = stat(this);
    s.reads++;
    s.rbytes += chunk.length;
  }
  return origPush.call(this, chunk, encoding);
};

let seen = 0;
setInterval(() => {
  if (!counting || done === seen) return;
  seen = done;
  tick();
  last = {
    ms: performance.now() - t0,
    requests: done - done0,
    avgInflight: {
      server: area.server / (performance.now() - t0),
      client: area.client / (performance.now() - t0),
    },
    elu: performance.eventLoopUtilization(elu0).utilization,
    sockets: [...sockets.values()].map((s) => ({ ...s })),
  };
}, 250).unref();

let printed = false;
process.prependListener('SIGTERM', report);
process.on('exit', report);
function report() {
  if (!last || printed) return;
  printed = true;
  const n = last.requests;
  const byBytes = last.sockets
    .filter((s) => s.writes + s.reads > 0)
    .sort((a, b) => b.wbytes + b.rbytes - (a.wbytes + a.rbytes));
  const r = (x, d = 100) => Math.round(x * d) / d;
  const g = byBytes[0];
  const rest = byBytes
    .slice(1)
    .reduce((a, s) => ({ sockets: a.sockets + 1, writes: a.writes + s.writes, reads: a.reads + s.reads }), {
      sockets: 0,
      writes: 0,
      reads: 0,
    });
  const secs = last.ms / 1000;
  process.stderr.write(
    `${JSON.stringify({
      pipeCount: true,
      pid: process.pid,
      requests: n,
      title: process.title,
      argv: process.argv.slice(1).join(' ').slice(-60),
      perSec: Math.round(n / secs),
      avgInflight: { server: r(last.avgInflight.server, 10), client: r(last.avgInflight.client, 10) },
      eventLoopUtilization: r(last.elu),
      geminio: g && {
        writesPerSec: Math.round(g.writes / secs),
        requestsPerWrite: r(n / g.writes, 10),
        bytesPerWrite: Math.round(g.wbytes / g.writes),
        readsPerSec: Math.round(g.reads / secs),
        requestsPerRead: r(n / g.reads, 10),
        bytesPerRead: Math.round(g.rbytes / g.reads),
      },
      otherSockets: {
        sockets: rest.sockets,
        writesPerReq: r(rest.writes / n),
        readsPerReq: r(rest.reads / n),
      },
    })}\n`,
  );
}
