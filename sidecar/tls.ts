/** Turns a TLS config section into Node TLS options, reading the PEM files it names. */
import { readFileSync } from 'node:fs';
import type tls from 'node:tls';
import type { TlsConfig } from './config.js';

/** Client-side options for dial(), or undefined when TLS is off. */
export function clientTls(c: TlsConfig): tls.ConnectionOptions | undefined {
  if (!c.enabled) return undefined;
  return {
    ca: c.caFile ? readFileSync(c.caFile) : undefined,
    cert: c.certFile ? readFileSync(c.certFile) : undefined,
    key: c.keyFile ? readFileSync(c.keyFile) : undefined,
    servername: c.servername,
    rejectUnauthorized: c.rejectUnauthorized,
  };
}

/** Server-side options for listen(), or undefined when TLS is off. */
export function serverTls(c: TlsConfig): tls.TlsOptions | undefined {
  if (!c.enabled) return undefined;
  if (!c.certFile || !c.keyFile) throw new Error('inbound.tls needs certFile and keyFile');
  return {
    ca: c.caFile ? readFileSync(c.caFile) : undefined,
    cert: readFileSync(c.certFile),
    key: readFileSync(c.keyFile),
    requestCert: c.requestCert,
    rejectUnauthorized: c.requestCert ? c.rejectUnauthorized : false,
  };
}
