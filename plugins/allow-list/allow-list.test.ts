/** The allow-list plugin: each list restricts one thing; `*` wildcards; absent lists restrict nothing. */
import { describe, expect, it } from 'vitest';
import type { PluginContext } from '../index.js';
import allowList, { compilePatterns } from './index.js';

const ctx: PluginContext = {
  name: 'allow-list',
  configDir: '.',
  logger: { debug() {}, info() {}, warn() {}, error() {} },
};
const id = { clientId: '12345', name: 'edge-1', streamId: '3' };
const connect = (clientId: string, name: string | undefined) => ({
  clientId,
  name,
  proposedClientId: undefined,
  meta: {},
  remoteAddress: undefined,
  peerCertificate: undefined,
  peerVerified: false,
});

describe('allow-list plugin', () => {
  it('patterns match whole values with * wildcards, and nothing else is special', () => {
    const m = compilePatterns(['/api/*', 'a.b', '/exact'], 'paths')!;
    expect(m('/api/x/y')).toBe(true);
    expect(m('/api')).toBe(false);
    expect(m('a.b')).toBe(true);
    expect(m('aXb')).toBe(false);
    expect(m('/exact/more')).toBe(false);
    expect(m(undefined)).toBe(false);
    expect(compilePatterns(undefined, 'x')).toBeUndefined();
    expect(() => compilePatterns('nope', 'paths')).toThrow(/list of strings/);
  });

  it('connect: ClientIDs and names', async () => {
    const s = await allowList.setup!({ clientIds: ['123*'], names: ['edge-*'] }, ctx);
    expect(await allowList.hooks.onConnect!(connect('12345', 'edge-1'), s)).toMatchObject({ allow: true });
    expect(await allowList.hooks.onConnect!(connect('999', 'edge-1'), s)).toMatchObject({ allow: false });
    expect(await allowList.hooks.onConnect!(connect('12345', 'core'), s)).toMatchObject({ allow: false });
    expect(await allowList.hooks.onConnect!(connect('12345', undefined), s)).toMatchObject({ allow: false });
  });

  it('services, paths, HTTP methods, RPC methods and topics', async () => {
    const s = await allowList.setup!(
      {
        services: ['app'],
        paths: ['/public/*'],
        httpMethods: ['GET'],
        rpcMethods: ['time'],
        topics: ['orders.*'],
      },
      ctx,
    );
    const h = allowList.hooks;
    expect(await h.onStream!({ ...id, meta: '', service: 'app', direction: 'inbound' }, s)).toMatchObject({
      allow: true,
    });
    expect(await h.onStream!({ ...id, meta: '', service: 'db', direction: 'inbound' }, s)).toMatchObject({
      allow: false,
    });
    const req = { ...id, method: 'GET', path: '/public/a?x=1', headers: {}, service: 'app' };
    expect(await h.onRequest!(req, s)).toMatchObject({ allow: true });
    expect(await h.onRequest!({ ...req, path: '/private' }, s)).toMatchObject({
      allow: false,
      reason: 'path /private is not allowed',
    });
    expect(await h.onRequest!({ ...req, method: 'DELETE' }, s)).toMatchObject({ allow: false });
    expect(await h.onRpc!({ ...id, method: 'time' }, s)).toMatchObject({ allow: true });
    expect(await h.onRpc!({ ...id, method: 'shutdown' }, s)).toMatchObject({ allow: false });
    expect(await h.onMessage!({ ...id, topic: 'orders.new' }, s)).toMatchObject({ allow: true });
    expect(await h.onMessage!({ ...id, topic: undefined }, s)).toMatchObject({ allow: false });
  });

  it('an absent list restricts nothing; an unknown option is refused at setup', async () => {
    const s = await allowList.setup!({}, ctx);
    expect(await allowList.hooks.onRpc!({ ...id, method: 'anything' }, s)).toMatchObject({ allow: true });
    await expect(async () => allowList.setup!({ path: ['/x'] } as never, ctx)).rejects.toThrow(
      /unknown option "path"/,
    );
  });
});
