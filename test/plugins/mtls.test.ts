/**
 * mtls-identity over a TLS inbound listener with client certificates: a CA, a server certificate and client
 * certificates (one with a ClientID URI SAN) are made with openssl in a temp dir.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dial } from '../../sdk/index.js';
import type { Sidecar } from '../../sidecar/main.js';
import { openssl } from '../helpers/tls.js';
import { type App, startApp } from '../sidecar/helpers.js';
import { geminioAddress, startInbound, startOutbound, tempDir } from './helpers.js';

/** Makes ca.pem, a server cert for 127.0.0.1 and a client cert with the given SANs, signed by the CA. */
function makeCerts(dir: string): void {
  openssl(
    dir,
    'req',
    '-x509',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-keyout',
    'ca-key.pem',
    '-out',
    'ca.pem',
    '-days',
    '2',
    '-subj',
    '/CN=test-ca',
  );
  const leaf = (name: string, cn: string, san: string, usage: string) => {
    writeFileSync(path.join(dir, `${name}.ext`), `subjectAltName=${san}\nextendedKeyUsage=${usage}\n`);
    openssl(
      dir,
      'req',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-keyout',
      `${name}-key.pem`,
      '-out',
      `${name}.csr`,
      '-subj',
      `/CN=${cn}`,
    );
    openssl(
      dir,
      'x509',
      '-req',
      '-in',
      `${name}.csr`,
      '-CA',
      'ca.pem',
      '-CAkey',
      'ca-key.pem',
      '-CAcreateserial',
      '-out',
      `${name}.pem`,
      '-days',
      '2',
      '-extfile',
      `${name}.ext`,
    );
  };
  leaf('server', 'localhost', 'IP:127.0.0.1,DNS:localhost', 'serverAuth');
  leaf('client', 'client-a', 'DNS:client-a.test,URI:urn:geminio:client-id:424242', 'clientAuth');
  // A certificate from another CA, which a plugin with caFile must refuse.
  openssl(
    dir,
    'req',
    '-x509',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-keyout',
    'rogue-key.pem',
    '-out',
    'rogue.pem',
    '-days',
    '2',
    '-subj',
    '/CN=rogue',
    '-addext',
    'subjectAltName=DNS:client-a.test',
  );
}

let app: App;
let dir: string;
const stop: Sidecar[] = [];

beforeAll(async () => {
  app = await startApp(1024);
  dir = tempDir();
  makeCerts(dir);
}, 30_000);
afterAll(async () => {
  for (const s of stop) s.destroy();
  await app?.close();
});

const serverTls = (extra: Record<string, unknown> = {}) => ({
  tls: {
    enabled: true,
    certFile: `${dir}/server.pem`,
    keyFile: `${dir}/server-key.pem`,
    caFile: `${dir}/ca.pem`,
    requestCert: true,
    ...extra,
  },
});

describe('mtls-identity', () => {
  it('name and ClientID come from the verified client certificate, not from what the client announces', async () => {
    const inbound = await startInbound(app, {
      inbound: serverTls(),
      plugins: [{ path: 'builtin:mtls-identity', options: { name: 'san-dns', clientId: 'san-uri' } }],
    });
    stop.push(inbound);
    const out = await startOutbound(geminioAddress(inbound), {
      tls: {
        enabled: true,
        caFile: `${dir}/ca.pem`,
        certFile: `${dir}/client.pem`,
        keyFile: `${dir}/client-key.pem`,
      },
    });
    stop.push(out.sidecar);
    const res = await request(`${out.web}/who`);
    expect(await res.body.json()).toMatchObject({ clientId: '424242' });
    const ends = [...inbound.inbound!.ends.values()];
    expect(ends.map((e) => [String(e.end.clientId), e.name])).toEqual([['424242', 'client-a.test']]);
    // Without a certificate TLS itself refuses (rejectUnauthorized).
    await expect(
      dial(geminioAddress(inbound), { tls: { ca: readCa() }, meta: '{"name":"client-a.test"}' }),
    ).rejects.toThrow();
  });

  it('when TLS lets unverified clients in, the plugin refuses them (no certificate, or one from another CA)', async () => {
    const inbound = await startInbound(app, {
      inbound: serverTls({ rejectUnauthorized: false }),
      plugins: [{ path: 'builtin:mtls-identity', options: { caFile: `${dir}/ca.pem`, clientId: 'hash' } }],
    });
    stop.push(inbound);
    const addr = geminioAddress(inbound);
    await expect(dial(addr, { tls: { ca: readCa() } })).rejects.toThrow(/a client certificate is required/);
    const rogue = { ca: readCa(), cert: read('rogue.pem'), key: read('rogue-key.pem') };
    await expect(dial(addr, { tls: rogue })).rejects.toThrow(/not issued by the configured CA/);
    const good = { ca: readCa(), cert: read('client.pem'), key: read('client-key.pem') };
    const a = await dial(addr, { tls: good });
    const b = await dial(addr, { tls: good, clientId: 1234n });
    // clientId: hash -> the same ClientID for the same certificate name, whatever the client proposes.
    expect(a.clientId).toBe(b.clientId);
    expect(a.clientId).not.toBe(1234n);
    a.destroy();
    b.destroy();
  });
});

function read(f: string): Buffer {
  return readFileSync(path.join(dir, f));
}
function readCa(): Buffer {
  return read('ca.pem');
}
