/** Test certificates made with openssl: self-signed EC certificates for 127.0.0.1 with a chosen serial. */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

export const hasOpenssl = spawnSync('openssl', ['version'], { stdio: 'ignore' }).status === 0;

/** Writes tls.crt (self-signed, CN=localhost, SAN IP:127.0.0.1, serial `serial` in hex) and tls.key into `dir`. */
export function makeCert(dir: string, serial: string): void {
  mkdirSync(dir, { recursive: true });
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-keyout',
      join(dir, 'tls.key'),
      '-out',
      join(dir, 'tls.crt'),
      '-days',
      '2',
      '-subj',
      '/CN=localhost',
      '-addext',
      'subjectAltName=IP:127.0.0.1',
      '-set_serial',
      `0x${serial}`,
    ],
    { stdio: 'pipe' },
  );
}
