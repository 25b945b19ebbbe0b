/**
 * A model, not a measurement: does serving inputs in batches, one batch per event-loop turn, leave a core idle on
 * the four-process HTTP paths at 64 connections? A discrete-event simulation of the closed loop load generator (L)
 * -> proxy A -> proxy B -> app (P) -> B -> A -> L with 64 requests on 2 cores:
 *
 *   node bench/pipeline-model.mjs [--costs JSON] [--cork A>B,B>A] [--flush-every N] [--pull P] [--wake US] [--seed N]
 *
 * Each process, when it runs, serves every input queued when its turn starts (one epoll batch), each at a fixed
 * CPU cost in µs (--costs: {"L":[req,resp],"A":[req,resp],"B":[req,resp],"P":[req]}, default: the sidecar path's
 * CPU per request in the quiet run of 2026-12-01 13:15 split half and half), plus 3 µs per turn; its outputs go
 * out after each item (a write per request) or, on the hops named by --cork, all at the end of the turn (the SDK's
 * uncork on setImmediate). One run queue per core as in Linux: a woken process goes to an idle core if there is
 * one (starting --wake µs later: an idle core wakes from HLT), else to the waker's core (a sync wake-up); a core
 * whose queue empties takes a process waiting on the other core with probability --pull (Linux's newidle balance,
 * which it skips when the core expects to idle for less than a balance costs, and which leaves a process that ran in
 * the last 0.5 ms, cache-hot, where it is), else idles.
 * --pull 1 is one shared queue. --flush-every N also sends what a corked hop holds after every N items. Prints
 * {reqPerSec, coresBusyPct, idleWakesPerSec}. It leaves out the cost of a write and of a wake-up, GC, and the
 * kernel's real placement: a hypothesis generator for bench/sidecar-http.ts, whose figures are the measurement.
 */
const arg = (flag, def) => {
  const i = process.argv.indexOf(flag);
  return i >= 0 ? process.argv[i + 1] : def;
};
const cost = JSON.parse(arg('--costs', '{"L":[14,14],"A":[16.5,16.5],"B":[17,17],"P":[12]}'));
const corkHops = new Set(arg('--cork', '').split(',').filter(Boolean));
const pull = Number(arg('--pull', '1'));
const wake = Number(arg('--wake', '0'));
let seed = Number(arg('--seed', '1'));
/** On a corked hop, what is held goes out after every N items too (0: only at the end of the turn). */
const flushEvery = Number(arg('--flush-every', '0'));
const rnd = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
const turnCost = 3,
  CORES = 2,
  T = 3e6,
  WARM = 3e5;
const next = { L: { resp: 'A' }, A: { req: 'B', resp: 'L' }, B: { req: 'P', resp: 'A' }, P: { req: 'B' } };
const procs = Object.fromEntries(
  ['L', 'A', 'B', 'P'].map((n) => [n, { name: n, queue: [], state: 'sleep', core: 0 }]),
);
const cores = Array.from({ length: CORES }, (_, i) => ({ i, cur: null, rq: [], idle: true }));
let now = 0,
  busy = 0,
  done = 0,
  wakes = 0;
const events = [];
const at = (t, fn) => events.push([t, fn]);
function deliver(to, kind, wakerCore) {
  const p = procs[to];
  p.queue.push(kind);
  if (p.state !== 'sleep') return;
  p.state = 'runnable';
  const idle = cores.find((c) => c.idle);
  if (idle) return start(idle, p, wake);
  const c = cores[wakerCore];
  c.rq.push(p);
}
function start(c, p, delay) {
  c.idle = false;
  c.cur = p;
  p.state = 'running';
  p.core = c.i;
  if (delay > 0 && now > WARM) wakes++;
  at(now + delay, () => turn(c, p));
}
function turn(c, p) {
  const t0 = now;
  let t = now + turnCost;
  const held = [];
  for (const kind of p.queue.splice(0)) {
    let c1, out;
    if (p.name === 'L') {
      c1 = cost.L[0] + cost.L[1];
      out = ['A', 'req'];
      if (t > WARM) done++;
    } else if (p.name === 'P') {
      c1 = cost.P[0];
      out = ['B', 'resp'];
    } else {
      c1 = kind === 'req' ? cost[p.name][0] : cost[p.name][1];
      out = [next[p.name][kind], kind];
    }
    t += c1;
    if (corkHops.has(`${p.name}>${out[0]}`)) {
      held.push(out);
      if (flushEvery > 0 && held.length >= flushEvery) {
        const batch = held.splice(0);
        at(t, () => {
          for (const o of batch) deliver(o[0], o[1], c.i);
        });
      }
    } else {
      const tt = t,
        o = out;
      at(tt, () => deliver(o[0], o[1], c.i));
    }
  }
  const end = t;
  for (const o of held) at(end, () => deliver(o[0], o[1], c.i));
  at(end, () => {
    busy += Math.max(0, Math.min(end, T) - Math.max(t0, WARM));
    c.cur = null;
    if (p.queue.length > 0) {
      p.state = 'runnable';
      c.rq.push(p);
    } else p.state = 'sleep';
    const n = c.rq.shift();
    if (n) return start(c, n, 0);
    const other = cores.find((o) => o !== c && o.rq.length > 0);
    if (other && rnd() < pull) return start(c, other.rq.shift(), 0);
    c.idle = true;
  });
}
for (let i = 0; i < 64; i++) procs.L.queue.push('resp');
procs.L.state = 'runnable';
start(cores[0], procs.L, 0);
while (events.length) {
  let bi = 0;
  for (let i = 1; i < events.length; i++) if (events[i][0] < events[bi][0]) bi = i;
  const [t, fn] = events.splice(bi, 1)[0];
  if (t > T) break;
  now = t;
  fn();
}
const secs = (T - WARM) / 1e6;
console.log(
  JSON.stringify({
    reqPerSec: Math.round(done / secs),
    coresBusyPct: Math.round((100 * busy) / (CORES * (T - WARM))),
    idleWakesPerSec: Math.round(wakes / secs),
  }),
);
