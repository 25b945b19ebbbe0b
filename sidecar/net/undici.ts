/**
 * The parts of undici the sidecar uses (Pool, Agent, request), loaded from their own modules rather than through
 * undici's index. The index initializes all of undici at once (fetch, WebSocket, EventSource, the mock agent, the
 * caches, the proxy agents): about 3 MB of heap and 9 MB of RSS that a sidecar never uses (docs/BENCHMARKS.md,
 * "Issue 14: the costs found and removed"). The types are undici's own (undici-modules.d.ts); the version is pinned
 * by package-lock.json, and test/sidecar/ exercises each of these through real requests.
 */
import type * as Undici from 'undici';
import apiRequest from 'undici/lib/api/api-request.js';
import AgentImpl from 'undici/lib/dispatcher/agent.js';
import PoolImpl from 'undici/lib/dispatcher/pool.js';

export const Pool = PoolImpl;
export const Agent = AgentImpl;
export type Pool = Undici.Pool;
export type Agent = Undici.Agent;

/** undici's `request(url, options)` on a given dispatcher (an absolute URL; its path and query are kept). */
export function request(
  url: string,
  opts: Omit<Undici.Dispatcher.RequestOptions, 'origin' | 'path'> & { dispatcher: Undici.Dispatcher },
): Promise<Undici.Dispatcher.ResponseData> {
  const u = new URL(url);
  const { dispatcher, ...rest } = opts;
  return apiRequest.call(dispatcher, { ...rest, origin: u.origin, path: `${u.pathname}${u.search}` });
}
