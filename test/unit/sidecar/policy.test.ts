// The policy room over its own parts (sidecar/policy/): one Decision from hooks and plugins alike, the hook runner
// failing closed, and the identity records the inbound side writes and every later decision reads. Real Metrics
// and a real Authz with a built-in plugin; a fake clock for timeouts.
import { afterEach, describe, expect, it, vi } from 'vitest';
import { HOOK_NAMES } from '../../../plugins/index.js';
import { silentLogger } from '../../../sidecar/observe/logger.js';
import { Metrics } from '../../../sidecar/observe/metrics.js';
import { Authz } from '../../../sidecar/policy/authz.js';
import { ALLOW, deny, PLUGIN_HOOK, POINTS, plainDecision } from '../../../sidecar/policy/decision.js';
import { HookRunner } from '../../../sidecar/policy/hooks.js';
import { Identities } from '../../../sidecar/policy/identities.js';

afterEach(() => {
  vi.useRealTimers();
});

function runner(o: { authz?: Authz; timeoutMs?: number } = {}) {
  const metrics = new Metrics({ defaults: false });
  const identities = new Identities();
  const hooks = new HookRunner({ metrics, logger: silentLogger(), identities, ...o });
  return { metrics, identities, hooks };
}

async function decisions(metrics: Metrics): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const v of (await metrics.authzDecisions.get()).values)
    out[`${v.labels.hook}:${v.labels.decision}`] = v.value;
  return out;
}

describe('Decision', () => {
  it('has one point per plugin hook', () => {
    expect(POINTS.map((p) => PLUGIN_HOOK[p])).toEqual([...HOOK_NAMES]);
  });

  it('reads an answer once: getters are not asked twice, anything but allow === true denies', () => {
    let reads = 0;
    const tricky = {
      get allow() {
        reads++;
        return reads === 1;
      },
      reason: 'x',
    };
    expect(plainDecision(tricky as never)).toEqual({ allow: true });
    expect(reads).toBe(1);
    expect(plainDecision({ allow: 'yes' } as never)).toEqual({ allow: false, reason: 'denied' });
    expect(plainDecision({ allow: false, reason: '', status: 429 } as never)).toEqual({
      allow: false,
      status: 429,
      reason: 'denied',
    });
  });

  it('copies what an allow carries and drops what is not of its type', () => {
    const headers = { 'x-a': '1' };
    const d = plainDecision({ allow: true, clientId: '9', name: 7, headers } as never);
    expect(d).toEqual({ allow: true, clientId: '9', headers: { 'x-a': '1' } });
    expect((d as { headers: object }).headers).not.toBe(headers);
  });

  it('builds a deny with or without a status', () => {
    expect(deny('no')).toEqual({ allow: false, reason: 'no' });
    expect(deny('slow', 503)).toEqual({ allow: false, status: 503, reason: 'slow' });
  });
});

describe('HookRunner', () => {
  it('asks the hooks in order and the first deny wins; each decision is counted', async () => {
    const { hooks, metrics } = runner();
    const asked: string[] = [];
    hooks.add(() => {
      asked.push('a');
      return undefined;
    });
    hooks.add(() => {
      asked.push('b');
      return deny('b says no', 429);
    });
    hooks.add(() => {
      asked.push('c');
      return ALLOW;
    });
    expect(await hooks.decide('request', { direction: 'outbound' })).toEqual({
      allow: false,
      status: 429,
      reason: 'b says no',
    });
    expect(asked).toEqual(['a', 'b']);
    expect(await decisions(metrics)).toEqual({ 'request:deny': 1 });
  });

  it('asks a hook only for the points it was added for, and refuses an unknown point', async () => {
    const { hooks } = runner();
    hooks.add(() => deny('streams only'), ['stream']);
    expect((await hooks.decide('request', { direction: 'outbound' })).allow).toBe(true);
    expect((await hooks.decide('stream', { direction: 'outbound' })).allow).toBe(false);
    expect(() => hooks.add(() => undefined, ['nope' as never])).toThrow(/unknown hook point "nope"/);
  });

  it('denies when a hook throws, and with 503 when it does not answer in time', async () => {
    vi.useFakeTimers();
    const { hooks } = runner({ timeoutMs: 250 });
    hooks.add((point) => {
      if (point === 'rpc') throw new Error('boom');
      return new Promise(() => {});
    });
    expect(await hooks.decide('rpc', { direction: 'outbound' })).toEqual({
      allow: false,
      reason: 'hook failed: boom',
    });
    const pending = hooks.decide('message', { direction: 'outbound' });
    await vi.advanceTimersByTimeAsync(250);
    expect(await pending).toEqual({ allow: false, status: 503, reason: 'hook timed out after 250 ms' });
  });

  it('denies what an inbound End does without a connect decision, and names the End once it has one', async () => {
    const { hooks, identities } = runner();
    expect(await hooks.decide('stream', { clientId: '5', direction: 'inbound' })).toEqual({
      allow: false,
      status: 403,
      reason: 'no connect decision for this End',
    });
    identities.remember({ clientId: '5', name: 'edge' });
    expect(await hooks.decide('stream', { clientId: '5', direction: 'inbound' })).toEqual({
      allow: true,
      name: 'edge',
    });
    // Outbound decisions never need an identity.
    expect(await hooks.decide('stream', { clientId: '6', direction: 'outbound' })).toEqual({ allow: true });
  });

  it('asks the plugins it was built with for inbound decisions, in the same vocabulary', async () => {
    const metrics = new Metrics({ defaults: false });
    const authz = new Authz(metrics, silentLogger());
    await authz.load(
      [{ path: 'builtin:allow-list', options: { services: ['billing'] }, timeoutMs: 200 }],
      '/',
    );
    const { hooks, identities } = runner({ authz });
    identities.remember({ clientId: '5', name: 'edge' });
    const facts = { clientId: '5', streamId: '3', direction: 'inbound' as const };
    expect(await hooks.decide('stream', { ...facts, service: 'billing' })).toEqual({
      allow: true,
      name: 'edge',
    });
    const denied = await hooks.decide('stream', { ...facts, service: 'orders' });
    expect(denied.allow).toBe(false);
    expect(denied).toMatchObject({ status: 403 });
    await authz.close();
  });
});

describe('Identities', () => {
  it('binds a record to its End, releases it only for that End', () => {
    const ids = new Identities();
    const a = {};
    const b = {};
    ids.remember({ clientId: '1', name: 'n' });
    expect(ids.bind('1', a)).toEqual({ clientId: '1', name: 'n', owner: a });
    expect(ids.bind('2', a)).toBeUndefined();
    ids.release('1', b);
    expect(ids.has('1')).toBe(true);
    ids.release('1', a);
    expect(ids.has('1')).toBe(false);
  });

  it('drops a record whose End never arrived, and keeps a bound one', () => {
    vi.useFakeTimers();
    const ids = new Identities();
    ids.remember({ clientId: '1', name: undefined }, 1000);
    ids.remember({ clientId: '2', name: undefined }, 1000);
    ids.bind('2', {});
    vi.advanceTimersByTime(1000);
    expect(ids.has('1')).toBe(false);
    expect(ids.has('2')).toBe(true);
  });
});
