/**
 * Bypass attempts are refused: work sent before the connect decision, an RPC on a non-default stream, a second
 * request on a keep-alive stream after a deny, and a client proposing another client's ClientID.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodePacket, PacketType as T } from '../../sdk/frame/index.js';
import { dial, type End } from '../../sdk/index.js';
import type { Sidecar } from '../../sidecar/main.js';
import { exchange, get } from '../helpers/raw-http.js';
import { RawPeer } from '../helpers/raw-peer.js';
import { type App, startApp } from '../sidecar/helpers.js';
import { geminioAddress, httpStream, startInbound, tempDir, writePlugin } from './helpers.js';

const seen = globalThis as unknown as { __bypassSeen?: string[] };

const PLUGIN = `
const note = (what) => (globalThis.__bypassSeen ??= []).push(what);
export default definePlugin({
  name: 'policy',
  hooks: {
    async onConnect(facts) {
      note('connect');
      await new Promise((r) => setTimeout(r, 150)); // a slow decision: the window a client might try to use
      if (facts.meta.deny) return deny('not today');
      return allow();
    },
    onStream(facts) { note('stream ' + facts.streamId); return allow(); },
    onRequest(facts) {
      note('request ' + facts.path);
      return facts.path.startsWith('/secret') ? deny('secret') : allow();
    },
    onRpc(facts) { note('rpc ' + facts.streamId); return allow(); },
  },
});`;

let app: App;
let inbound: Sidecar;
const ends: End[] = [];

beforeAll(async () => {
  app = await startApp(1024);
  const dir = tempDir();
  writePlugin(dir, 'policy.ts', PLUGIN);
  inbound = await startInbound(app, { plugins: [{ path: `${dir}/policy.ts`, timeoutMs: 1_000 }] });
});
afterAll(async () => {
  for (const e of ends) e.destroy();
  inbound?.destroy();
  await app?.close();
});

// Each client announces its own name: a name held by a connected client is refused to a second one.
let named = 0;
async function client(options: Parameters<typeof dial>[1] = {}): Promise<End> {
  const meta = JSON.stringify({ name: `c${++named}` });
  const end = await dial(geminioAddress(inbound), { meta, ...options });
  ends.push(end);
  return end;
}

describe('bypass attempts', () => {
  it('a stream or an RPC sent before the connect decision closes the connection; nothing reaches the app', async () => {
    seen.__bypassSeen = [];
    const hits = app.hits;
    const peer = await RawPeer.connect(inbound.inbound!.address()!.port);
    peer.send(
      encodePacket({
        type: T.Conn,
        id: 1n,
        flags: 0x1,
        clientId: 0n,
        data: { meta: Buffer.from('{"name":"x"}') },
      }),
      encodePacket({
        type: T.Session,
        id: 2n,
        priority: 0,
        flags: 0,
        negotiateId: 7n,
        data: { meta: Buffer.from('app') },
      }),
      encodePacket({
        type: T.Request,
        id: 3n,
        sessionId: 1n,
        data: { key: Buffer.from('time'), value: Buffer.from('x') },
      }),
    );
    await peer.waitClosedByPeer(10_000);
    peer.destroy();
    expect(app.hits).toBe(hits);
    expect(seen.__bypassSeen.filter((s) => !s.startsWith('connect'))).toEqual([]);
  });

  it('a denied connect gets an error ConnAck and no End', async () => {
    const err = await client({ meta: JSON.stringify({ name: 'c', deny: true }) }).catch((e: Error) => e);
    expect(err).toBeInstanceOf(Error);
    expect((err as Error).message).toMatch(/not today/);
    expect(inbound.inbound!.ends.size).toBe(0);
  });

  it('an RPC on a non-default stream is not served (methods live on the default stream only)', async () => {
    const end = await client();
    const stream = await httpStream(end);
    seen.__bypassSeen = [];
    const hits = app.hits;
    const err = await stream.call('time', 'x', { timeout: 3_000 }).catch((e: Error) => e);
    expect((err as Error).name).toBe('NoSuchMethodError');
    expect(app.hits).toBe(hits);
    expect(seen.__bypassSeen).toEqual([]);
    // On the default stream the hook is asked and sees stream 1.
    expect((await end.call('time', 'x')).data.toString()).toBe('12:00');
    expect(seen.__bypassSeen).toEqual(['rpc 1']);
  });

  it('every request of a keep-alive stream is decided: a deny does not open the stream for the next ones', async () => {
    const end = await client();
    const stream = await httpStream(end);
    const hits = app.hits;
    const answers = await exchange(stream, [get('/secret'), get('/secret/2'), get('/open'), get('/secret')]);
    expect(answers.map((a) => a.status)).toEqual([403, 403, 200, 403]);
    expect(JSON.parse(answers[0]!.body)).toEqual({ error: 'secret', code: 'FORBIDDEN' });
    expect(app.hits).toBe(hits + 1);
    // A denied request with a body closes the stream instead of reading the body.
    const s2 = await httpStream(end);
    const [denied] = await exchange(s2, [
      `POST /secret HTTP/1.1\r\nhost: a\r\ncontent-length: 5\r\n\r\nGET /`,
    ]);
    expect(denied).toMatchObject({ status: 403, headers: { connection: 'close' } });
  });

  it("a client proposing another client's ClientID does not get it, connected or gone", async () => {
    const a = await client();
    const b = await client({ clientId: a.clientId });
    expect(b.clientId).not.toBe(a.clientId);
    // The app sees each End's own ClientID, whatever header the client sends.
    const [res] = await exchange(await httpStream(b), [
      get('/who', 'GET', `x-geminio-client-id: ${a.clientId}\r\n`),
    ]);
    expect(JSON.parse(res!.body).clientId).toBe(String(b.clientId));
    const taken = a.clientId;
    await a.close();
    const c = await client({ clientId: taken });
    expect(c.clientId).not.toBe(taken);
  });
});
