// Smoke test of the Go interop peer against itself (Go server <-> Go client, no
// Node SDK involved): checks that the peer program and its driver work before
// they are used to test the Node implementation.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GoPeer, goAvailable } from './go-peer.js';

// Skipped on machines without a Go toolchain so that `npm test` still works
// there; in CI (CI set) the suite always runs, and a missing toolchain fails it.
describe.skipIf(!goAvailable && !process.env.CI)('Go interop peer (Go <-> Go)', () => {
  let server: GoPeer | undefined;
  let client: GoPeer | undefined;

  it('has a Go toolchain', () => {
    expect(goAvailable, 'go is not on PATH (required in CI)').toBe(true);
  });

  beforeAll(async () => {
    if (!goAvailable) return;
    server = await GoPeer.server();
    client = await GoPeer.client(server.addr, ['-meta', 'smoke-client']);
  });

  afterAll(async () => {
    await Promise.all([client?.stop(), server?.stop()]);
  });

  it('both sides report the End with the same clientId and the client meta', async () => {
    const c = await client!.waitFor('end');
    const s = await server!.waitFor('end');
    expect(typeof c.clientId).toBe('string');
    expect(c.clientId).toMatch(/^[1-9][0-9]*$/);
    expect(s.clientId).toBe(c.clientId);
    expect(s.meta).toBe('smoke-client');
    // built-in handlers registered (each side acked the other's Register packets)
    const [cr, sr] = await Promise.all([client!.waitFor('ready'), server!.waitFor('ready')]);
    expect(sr.methods).toEqual(expect.arrayContaining(['echo', 'fail', 'slow', 'whoami']));
    expect(cr.methods).toEqual(expect.arrayContaining(['echo', 'fail', 'slow', 'whoami']));
    await server!.waitFor('remote-registration', (e) => e.method === 'echo' && e.streamId === '1');
  });

  it('call echo returns the request data', async () => {
    const r = await client!.request('call echo hi', 'call-result', (e) => e.method === 'echo');
    expect(r).toMatchObject({ data: 'hi', error: '' });
  });

  it('call fail returns the handler error text', async () => {
    const r = await client!.request('call fail x', 'call-result', (e) => e.method === 'fail');
    expect(r.error).toContain('boom: x');
    expect(r.data).toBe('');
  });

  it('call whoami returns the clientId the server assigned', async () => {
    const { clientId } = client!.all('end')[0]!;
    const r = await client!.request('call whoami', 'call-result', (e) => e.method === 'whoami');
    expect(r).toMatchObject({ data: clientId, error: '' });
  });

  it('publish is delivered and acked', async () => {
    const r = await client!.request('publish hello', 'publish-result');
    expect(r.error).toBe('');
    const m = await server!.waitFor('message', (e) => e.data === 'hello');
    expect(m).toMatchObject({ streamId: '1', topic: '', custom: '' });
  });

  it('publish with an "error:" payload is acked with that error', async () => {
    const r = await client!.request('publish error:nope topicA customB', 'publish-result');
    expect(r.error).toBe('nope');
    const m = await server!.waitFor('message', (e) => e.data === 'error:nope');
    expect(m).toMatchObject({ topic: 'topicA', custom: 'customB' });
  });

  it('a client-opened stream carries meta and its bytes arrive intact', async () => {
    client!.send('open m1 100000');
    const opened = await client!.waitFor('opened');
    expect(opened.error).toBe('');
    expect(opened.streamId).toMatch(/^[1-9][0-9]*$/);
    const accepted = await server!.waitFor('stream', (e) => e.streamId === opened.streamId);
    expect(accepted.meta).toBe('m1');
    const written = await client!.waitFor('written', (e) => e.streamId === opened.streamId);
    expect(written.bytes).toBe(100000);
    expect(written.sha256).toMatch(/^[0-9a-f]{64}$/);

    const closedLocal = await client!.request(
      `close-stream ${opened.streamId}`,
      'stream-closed-local',
      (e) => e.streamId === opened.streamId,
    );
    expect(closedLocal.error).toBe('');
    const closed = await server!.waitFor('stream-closed', (e) => e.streamId === opened.streamId);
    expect(closed.bytes).toBe(100000);
    expect(closed.sha256).toBe(written.sha256);
    // the opener's reader ends too once the Dismiss exchange completes
    await client!.waitFor('stream-closed', (e) => e.streamId === opened.streamId);
  });
});
