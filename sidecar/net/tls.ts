/**
 * TLS material: reading and checking the PEM files a TLS section names (at start, by check-config and on every
 * reload), and turning them into Node TLS options. A bad file is a config problem naming its key.
 */
import { createPrivateKey, type KeyObject, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import tls from 'node:tls';
import type { TargetTlsConfig, TlsConfig } from '../config/schema.js';
import type { ConfigProblem } from '../config/validate.js';

/** The PEM contents of a TLS section's files. */
export interface TlsMaterial {
  ca?: Buffer;
  cert?: Buffer;
  key?: Buffer;
}

/**
 * Reads the files of an enabled TLS section and checks them: each readable, certificates and keys parse, the key
 * matches the certificate, and Node accepts the set. Problems name `path.caFile` and the like.
 */
export function readTlsMaterial(
  c: TlsConfig,
  path: string,
): { material: TlsMaterial; problems: ConfigProblem[] } {
  const problems: ConfigProblem[] = [];
  const material: TlsMaterial = {};
  if (!c.enabled) return { material, problems };
  const read = (k: 'caFile' | 'certFile' | 'keyFile'): Buffer | undefined => {
    const file = c[k];
    if (file === undefined) return undefined;
    try {
      return readFileSync(file);
    } catch (err) {
      problems.push({
        path: `${path}.${k}`,
        value: file,
        expected: `a readable file (${(err as Error).message})`,
      });
      return undefined;
    }
  };
  material.ca = read('caFile');
  material.cert = read('certFile');
  material.key = read('keyFile');
  let cert: X509Certificate | undefined;
  let key: KeyObject | undefined;
  const parse = <T>(k: string, file: string | undefined, what: string, fn: () => T): T | undefined => {
    try {
      return fn();
    } catch (err) {
      problems.push({ path: `${path}.${k}`, value: file, expected: `${what} (${(err as Error).message})` });
      return undefined;
    }
  };
  if (material.ca) parse('caFile', c.caFile, 'a PEM CA certificate', () => new X509Certificate(material.ca!));
  if (material.cert)
    cert = parse('certFile', c.certFile, 'a PEM certificate', () => new X509Certificate(material.cert!));
  if (material.key)
    key = parse('keyFile', c.keyFile, 'a PEM private key', () => createPrivateKey(material.key!));
  if (cert && key && !cert.checkPrivateKey(key)) {
    problems.push({
      path: `${path}.keyFile`,
      value: c.keyFile,
      expected: `the private key of ${c.certFile}`,
    });
  }
  if (problems.length === 0) {
    parse('certFile', c.certFile, 'a certificate and key Node accepts', () =>
      tls.createSecureContext(material),
    );
  }
  return { material, problems };
}

/** Client-side options for dial(), or undefined when TLS is off. */
export function clientTls(c: TlsConfig, m: TlsMaterial): tls.ConnectionOptions | undefined {
  if (!c.enabled) return undefined;
  return { ...m, servername: c.servername, rejectUnauthorized: c.rejectUnauthorized };
}

/** The TLS section of an h2:// target as a client-side TlsConfig (an h2:// target is always TLS). */
export function targetTlsConfig(t: TargetTlsConfig): TlsConfig {
  return { ...t, enabled: true, requestCert: false };
}

/** Server-side options for listen(), or undefined when TLS is off. */
export function serverTls(c: TlsConfig, m: TlsMaterial): tls.TlsOptions | undefined {
  if (!c.enabled) return undefined;
  return {
    ...m,
    requestCert: c.requestCert,
    rejectUnauthorized: c.requestCert ? c.rejectUnauthorized : false,
  };
}

/** A fingerprint of the material, to tell whether a reload changed anything. */
export function materialKey(m: TlsMaterial): string {
  return [m.ca, m.cert, m.key].map((b) => b?.toString('base64') ?? '').join('|');
}
