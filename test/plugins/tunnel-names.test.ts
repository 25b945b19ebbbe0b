/**
 * Reverse-tunnel names: a name a connected End holds is refused to a second one, unless a plugin assigns it or
 * `inbound.names` lists the ClientIDs that may hold it.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dial, type End, HandshakeRejectedError } from '../../sdk/index.js';
import type { Sidecar } from '../../sidecar/main.js';
import { eventually } from '../helpers/wait.js';
import { type App, metricValue, startApp } from '../sidecar/helpers.js';
import { geminioAddress, startInbound, tempDir, writePlugin } from './helpers.js';

let app: App;
const sidecars: Sidecar[] = [];
const ends: End[] = [];

beforeAll(async () => {
  app = await startApp(1024);
});
afterAll(async () => {
  for (const e of ends) e.destroy();
  for (const s of sidecars) s.destroy();
  await app?.close();
});

async function connect(s: Sidecar, meta: Record<string, unknown>): Promise<End | Error> {
  const end = await dial(geminioAddress(s), { meta: JSON.stringify(meta) }).catch((e: Error) => e);
  if (!(end instanceof Error)) ends.push(end);
  return end;
}

describe('reverse-tunnel names', () => {
  it('without a plugin: the second End announcing a held name is refused; the name is free again once it leaves', async () => {
    const s = await startInbound(app, { plugins: [] });
    sidecars.push(s);
    const first = await connect(s, { name: 'laptop' });
    expect(first).not.toBeInstanceOf(Error);
    const second = await connect(s, { name: 'laptop' });
    expect(second).toBeInstanceOf(HandshakeRejectedError);
    expect((second as Error).message).toContain('name "laptop" is held by a connected client');
    expect(await metricValue(s, 'geminio_inbound_name_refusals_total')).toBe(1);
    // The tunnel still finds the first one.
    const holder = () => s.inbound!.find({ name: 'laptop' })?.clientId;
    await eventually(() => holder() === (first as End).clientId, 5_000, 'the first End to hold the name');
    // Another name is not affected.
    expect(await connect(s, { name: 'desktop' })).not.toBeInstanceOf(Error);
    (first as End).destroy();
    await eventually(() => holder() === undefined, 5_000, 'the server to see the first End go');
    const third = await connect(s, { name: 'laptop' });
    expect(third).not.toBeInstanceOf(Error);
    await eventually(() => holder() === (third as End).clientId, 5_000, 'the third End to hold the name');
  });

  it('inbound.names reserves a name for the ClientIDs listed', async () => {
    const dir = tempDir();
    // A plugin that gives the ClientID the client proposes in its meta (as mtls-identity would from a certificate).
    writePlugin(
      dir,
      'ids.ts',
      'export default definePlugin({ name: "ids", hooks: { onConnect: (f) => allow({ clientId: String(f.meta.id) }) } });',
    );
    const s = await startInbound(app, {
      plugins: [{ path: 'ids.ts' }],
      configDir: dir,
      inbound: { names: { laptop: { clientIds: ['1001', '1002'] } } },
    });
    sidecars.push(s);
    expect(await connect(s, { name: 'laptop', id: 1001 })).not.toBeInstanceOf(Error);
    // A listed ClientID may hold it at the same time.
    expect(await connect(s, { name: 'laptop', id: 1002 })).not.toBeInstanceOf(Error);
    const other = await connect(s, { name: 'laptop', id: 1003 });
    expect(other).toBeInstanceOf(HandshakeRejectedError);
    expect((other as Error).message).toContain('reserved for other ClientIDs');
  });

  it('a plugin that assigns the name with allow({ name }) decides', async () => {
    const dir = tempDir();
    writePlugin(
      dir,
      'namer.ts',
      'export default definePlugin({ name: "namer", hooks: { onConnect: () => allow({ name: "laptop" }) } });',
    );
    const s = await startInbound(app, { plugins: [{ path: 'namer.ts' }], configDir: dir });
    sidecars.push(s);
    expect(await connect(s, { name: 'a' })).not.toBeInstanceOf(Error);
    const second = await connect(s, { name: 'b' });
    expect(second).not.toBeInstanceOf(Error);
    // The most recent holder.
    const holder = () => s.inbound!.find({ name: 'laptop' })?.clientId;
    await eventually(() => holder() === (second as End).clientId, 5_000, 'the second End to hold the name');
  });
});
