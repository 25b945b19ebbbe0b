/**
 * TLS fixtures: a key and a self-signed certificate for CN=localhost (SAN DNS:localhost and IP:127.0.0.1), made once per test file
 * with openssl in a temporary directory. Node cannot make certificates itself; without openssl there is none
 * (tests skip with that reason, see `hasOpenssl`; CI installs openssl).
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const hasOpenssl = (() => {
  try {
    execFileSync('openssl', ['version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

function makeCertificate(): { key: Buffer; cert: Buffer } {
  const dir = mkdtempSync(join(tmpdir(), 'geminio-tls-'));
  try {
    makeCert(dir, '01');
    return { key: readFileSync(join(dir, 'tls.key')), cert: readFileSync(join(dir, 'tls.crt')) };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

let material: { key: Buffer; cert: Buffer } | undefined;

/** The self-signed localhost key and certificate (made on first use). */
export function selfSigned(): { key: Buffer; cert: Buffer } {
  material ??= makeCertificate();
  return material;
}

/** Runs openssl with `args` in `cwd` (its errors on stderr are kept in the thrown error). */
export function openssl(cwd: string, ...args: string[]): void {
  execFileSync('openssl', args, { cwd, stdio: 'pipe' });
}

/**
 * Writes tls.crt (self-signed EC, CN=localhost, SAN DNS:localhost and IP:127.0.0.1, serial `serial` in hex) and
 * tls.key into `dir`: certificate files that differ by serial, for tests that rotate them.
 */
export function makeCert(dir: string, serial: string): void {
  mkdirSync(dir, { recursive: true });
  openssl(
    dir,
    'req',
    '-x509',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:prime256v1',
    '-nodes',
    '-keyout',
    'tls.key',
    '-out',
    'tls.crt',
    '-days',
    '2',
    '-subj',
    '/CN=localhost',
    '-addext',
    'subjectAltName=DNS:localhost,IP:127.0.0.1',
    '-set_serial',
    `0x${serial}`,
  );
}
