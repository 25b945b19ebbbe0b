/** The token plugin: shared secrets and signed tokens, two active keys for rotation, key and token expiry. */
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { type ConnectFacts, type Decision, type PluginContext, signToken } from '../index.js';
import token from './index.js';

const OLD = 'old-key-0123456789abcdef';
const NEW = 'new-key-0123456789abcdef';
const OTHER = 'other-key-0123456789abcd';
const ctx = (configDir = process.cwd()): PluginContext => ({
  name: 'token',
  configDir,
  logger: { debug() {}, info() {}, warn() {}, error() {} },
});
const facts = (meta: Record<string, unknown>, clientId = '1000'): ConnectFacts => ({
  clientId,
  name: 'announced',
  proposedClientId: undefined,
  meta,
  remoteAddress: '127.0.0.1',
  peerCertificate: undefined,
  peerVerified: false,
});
const nowS = () => Math.floor(Date.now() / 1000);

async function connect(options: object, meta: Record<string, unknown>): Promise<Decision> {
  const state = await token.setup!(options as never, ctx());
  return token.hooks.onConnect!(facts(meta), state);
}

describe('token plugin', () => {
  it('signed tokens: subject becomes the name, cid the ClientID; either of two keys verifies', async () => {
    const keys = [OLD, NEW];
    for (const key of keys) {
      const d = await connect(
        { keys },
        { token: signToken({ sub: 'edge-1', exp: nowS() + 60, cid: '4242' }, key) },
      );
      expect(d).toMatchObject({ allow: true, name: 'edge-1', clientId: '4242' });
    }
    const forged = await connect({ keys }, { token: signToken({ sub: 'edge-1', exp: nowS() + 60 }, OTHER) });
    expect(forged).toMatchObject({ allow: false, reason: 'bad token signature' });
  });

  it('rotation: after the old key is dropped (or past its notAfter), its tokens are refused', async () => {
    const t = signToken({ sub: 'a', exp: nowS() + 60 }, OLD);
    expect(await connect({ keys: [NEW] }, { token: t })).toMatchObject({ allow: false });
    const past = new Date(Date.now() - 1000).toISOString();
    expect(await connect({ keys: [{ secret: OLD, notAfter: past }, NEW] }, { token: t })).toMatchObject({
      allow: false,
    });
    expect(await connect({ keys: [{ secret: OLD }, NEW] }, { token: t })).toMatchObject({ allow: true });
  });

  it('expiry: an expired token is refused at connect (beyond the skew), and later work after it expires', async () => {
    const expired = signToken({ sub: 'a', exp: nowS() - 120 }, NEW);
    expect(await connect({ keys: [NEW] }, { token: expired })).toMatchObject({
      allow: false,
      reason: 'token expired',
    });
    const withinSkew = signToken({ sub: 'a', exp: nowS() - 5 }, NEW);
    expect(await connect({ keys: [NEW] }, { token: withinSkew })).toMatchObject({ allow: true });

    const state = await token.setup!({ keys: [NEW], clockSkewSeconds: 0 }, ctx());
    let now = Date.now();
    (state as { now: () => number }).now = () => now;
    const t = signToken({ sub: 'a', exp: Math.floor(now / 1000) + 10 }, NEW);
    expect(await token.hooks.onConnect!(facts({ token: t }, '77'), state)).toMatchObject({ allow: true });
    const rpc = { clientId: '77', name: 'a', streamId: '1', method: 'm' };
    expect(await token.hooks.onRpc!(rpc, state)).toMatchObject({ allow: true });
    now += 11_000;
    expect(await token.hooks.onRpc!(rpc, state)).toMatchObject({ allow: false, reason: 'token expired' });
  });

  it('tampered claims and missing tokens are refused', async () => {
    const t = signToken({ sub: 'a', exp: nowS() + 60 }, NEW);
    const [p, payload, sig] = t.split('.');
    const evil = Buffer.from(JSON.stringify({ sub: 'admin', exp: nowS() + 60 })).toString('base64url');
    expect(await connect({ keys: [NEW] }, { token: `${p}.${evil}.${sig}` })).toMatchObject({ allow: false });
    expect(await connect({ keys: [NEW] }, { token: `${p}.${payload}` })).toMatchObject({ allow: false });
    expect(await connect({ keys: [NEW] }, {})).toMatchObject({
      allow: false,
      reason: 'no token in the connection meta',
    });
  });

  it('shared mode: the token must equal an active key', async () => {
    expect(await connect({ mode: 'shared', keys: [OLD, NEW] }, { token: NEW })).toMatchObject({
      allow: true,
    });
    expect(await connect({ mode: 'shared', keys: [OLD, NEW] }, { token: `${NEW}x` })).toMatchObject({
      allow: false,
    });
    expect(await connect({ mode: 'shared', keys: [NEW] }, { token: OLD })).toMatchObject({ allow: false });
  });

  it('setup refuses bad options: no keys, three keys, short secrets; reads secretFile relative to the config', async () => {
    await expect(async () => token.setup!({ keys: [] }, ctx())).rejects.toThrow(/one or two keys/);
    await expect(async () => token.setup!({ keys: [OLD, NEW, OTHER] }, ctx())).rejects.toThrow(/one or two/);
    await expect(async () => token.setup!({ keys: ['short'] }, ctx())).rejects.toThrow(/at least 16 bytes/);
    const dir = mkdtempSync(path.join(os.tmpdir(), 'token-'));
    writeFileSync(path.join(dir, 'key'), `${NEW}\n`);
    const state = await token.setup!({ mode: 'shared', keys: [{ secretFile: 'key' }] }, ctx(dir));
    expect(await token.hooks.onConnect!(facts({ token: NEW }), state)).toMatchObject({ allow: true });
  });
});
