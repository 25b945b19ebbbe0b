/**
 * What a request leaves in a sidecar's old generation (issue 14 round 5, docs/BENCHMARKS.md): per-request work that
 * made old-space garbage, and so full GCs, in V8 (Node 20). Each check runs in a child node with the V8 flag it
 * needs, and counts (hidden classes, old-space bytes), never time.
 */
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const src = (rel: string) => fileURLToPath(new URL(`../../../${rel}`, import.meta.url));
/** Runs an ES module script in a child node (tsx for the sources) and returns its last stdout line, parsed. */
function child<T>(flags: string[], script: string): T {
  const out = execFileSync(
    process.execPath,
    [...flags, '--import', 'tsx', '--input-type=module', '-e', script],
    {
      encoding: 'utf8',
    },
  );
  return JSON.parse(out.trim().split('\n').pop()!) as T;
}

// Per request, the sidecars copy their own headers (identity, x-request-id) and add the client's or the app's to
// the copy. V8 gives a spread copy (`{ ...extra }`) of a non-empty object a hidden class outside the transition
// tree, so every header added to it made new hidden classes each request: the inbound sidecar's ~5 maps per
// request, its old-space garbage (issue 14 round 5). In a child with V8's natives syntax: the headers of two
// requests with the same names have the same hidden class.
describe("copies of the sidecar's headers, request after request", () => {
  it('keep one hidden class (no new maps per request)', () => {
    const script = `
      const { forwardHeaders, responseHeaders } = await import(${JSON.stringify(src('sidecar/proxy/http-util.ts'))});
      const identity = { 'x-geminio-client-id': '7', 'x-geminio-client-name': 'web' };
      const set = { 'x-request-id': 'r' };
      const client = () => ({ host: 'h', 'user-agent': 'u', accept: '*/*', 'x-request-id': String(Math.random()) });
      const app = () => ({ 'content-type': 'application/json', date: String(Date.now()), 'content-length': '100' });
      const same = (make) => { let prev = make(), n = 0; for (let i = 0; i < 200; i++) { const o = make(); if (%HaveSameMap(o, prev)) n++; prev = o; } return n; };
      console.log(JSON.stringify({
        forward: same(() => forwardHeaders(client(), identity, 'x-geminio-')),
        response: same(() => responseHeaders(app(), set)),
        identityKept: Object.keys(identity).length === 2 && Object.keys(set).length === 1,
      }));
    `;
    const r = child<{ forward: number; response: number; identityKept: boolean }>(
      ['--allow-natives-syntax'],
      script,
    );
    expect(r).toEqual({ forward: 200, response: 200, identityKept: true });
  });
});

// The outbound's requests in flight on a client connection were a Set: added to and emptied per keep-alive request,
// an old Set rehashes into a new table V8 allocates in the old generation, ~120-140 bytes of old-space garbage per
// request. The list through the requests allocates nothing; the Set does, as a control of the measure.
describe('the requests in flight on a client connection', () => {
  it('are added and taken out without old-space garbage', () => {
    const script = `
      import v8 from 'node:v8';
      const { InFlight } = await import(${JSON.stringify(src('sidecar/proxy/http.ts'))});
      const old = () => v8.getHeapSpaceStatistics().find((s) => s.space_name === 'old_space').space_used_size;
      const list = new InFlight();
      const set = new Set();
      gc(); gc(); // both in the old generation, as a long-lived connection's are
      const grows = (f) => { for (let i = 0; i < 500; i++) f(); const a = old(); for (let i = 0; i < 5000; i++) f(); return old() - a; };
      const request = () => ({ res: {}, abandon() {}, prev: undefined, next: undefined });
      const viaList = grows(() => { const w = request(); list.add(w); list.delete(w); });
      const viaSet = grows(() => { const w = request(); set.add(w); set.delete(w); });
      const seen = [];
      const a = request(), b = request(), c = request();
      list.add(a); list.add(b); list.add(c);
      list.delete(b);
      list.each((w) => { seen.push(w === a ? 'a' : w === c ? 'c' : '?'); list.delete(w); });
      list.delete(a); // twice: nothing
      let left = 0;
      list.each(() => left++);
      console.log(JSON.stringify({ viaList, viaSet, seen: seen.sort(), left }));
    `;
    const r = child<{ viaList: number; viaSet: number; seen: string[]; left: number }>(
      ['--expose-gc'],
      script,
    );
    expect(r.seen).toEqual(['a', 'c']);
    expect(r.left).toBe(0);
    expect(r.viaSet).toBeGreaterThan(5000 * 60); // the measure sees the Set's tables
    expect(r.viaList).toBeLessThan(5000 * 20);
  });
});
