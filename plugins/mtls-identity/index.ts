/**
 * `mtls-identity`: the End's name (and optionally its ClientID) come from its TLS client certificate, not from
 * what it announces. Needs the inbound listener on TLS with `requestCert: true`. A certificate is trusted when TLS
 * verified it (`rejectUnauthorized: true`, the default) or, with `caFile`, when this plugin verifies it against
 * that CA itself; otherwise the connection is refused.
 */
import { createHash, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { allow, definePlugin, deny } from '../index.js';

export interface MtlsIdentityOptions {
  /** Where the name comes from: `cn` (subject CN), `san-dns`, `san-uri`, `san-email`; default `san-dns`, then `cn`. */
  name?: 'cn' | 'san-dns' | 'san-uri' | 'san-email' | 'auto';
  /**
   * Where the ClientID comes from: `none` (default: the sidecar assigns one), `san-uri` (a URI SAN
   * `urn:geminio:client-id:<decimal>`), or `hash` (derived from the name, so it is stable across reconnects).
   */
  clientId?: 'none' | 'san-uri' | 'hash';
  /** Verify the certificate against this CA (PEM, relative to the config file) besides or instead of TLS. */
  caFile?: string;
}

interface State {
  name: NonNullable<MtlsIdentityOptions['name']>;
  clientId: NonNullable<MtlsIdentityOptions['clientId']>;
  ca: X509Certificate | undefined;
}

const CLIENT_ID_URI = /^urn:geminio:client-id:([1-9]\d{0,19})$/;

/** The SAN entries of a certificate as [type, value] pairs (`DNS`, `URI`, `email`, `IP Address`). */
export function subjectAltNames(cert: X509Certificate): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (const part of (cert.subjectAltName ?? '').split(/,\s*/)) {
    const i = part.indexOf(':');
    if (i <= 0) continue;
    let value = part.slice(i + 1);
    if (value.startsWith('"')) {
      try {
        value = JSON.parse(value) as string; // Node quotes values that contain separators
      } catch {
        continue;
      }
    }
    out.push([part.slice(0, i), value]);
  }
  return out;
}

/** The subject's common name. */
export function commonName(cert: X509Certificate): string | undefined {
  for (const line of cert.subject.split('\n')) if (line.startsWith('CN=')) return line.slice(3);
  return undefined;
}

function pickName(cert: X509Certificate, how: State['name']): string | undefined {
  const sans = subjectAltNames(cert);
  const san = (type: string) => sans.find(([t]) => t === type)?.[1];
  switch (how) {
    case 'cn':
      return commonName(cert);
    case 'san-dns':
      return san('DNS');
    case 'san-uri':
      return sans.find(([t, v]) => t === 'URI' && !CLIENT_ID_URI.test(v))?.[1];
    case 'san-email':
      return san('email');
    default:
      return san('DNS') ?? commonName(cert);
  }
}

/** A ClientID derived from a name: the first 8 bytes of its SHA-256 with the top bit clear, never 0. */
function hashClientId(name: string): string {
  const id = createHash('sha256').update(name).digest().readBigUInt64BE(0) & ((1n << 63n) - 1n);
  return String(id === 0n ? 1n : id);
}

export default definePlugin<MtlsIdentityOptions, State>({
  name: 'mtls-identity',
  setup(options, context) {
    const name = options.name ?? 'auto';
    if (!['cn', 'san-dns', 'san-uri', 'san-email', 'auto'].includes(name))
      throw new Error(`bad name source "${name}"`);
    const clientId = options.clientId ?? 'none';
    if (!['none', 'san-uri', 'hash'].includes(clientId)) throw new Error(`bad clientId source "${clientId}"`);
    const ca = options.caFile
      ? new X509Certificate(readFileSync(path.resolve(context.configDir, options.caFile)))
      : undefined;
    return { name, clientId, ca };
  },
  hooks: {
    onConnect(facts, s) {
      const cert = facts.peerCertificate;
      if (!cert) return deny('a client certificate is required');
      if (s.ca) {
        const now = Date.now();
        const trusted =
          cert.checkIssued(s.ca) &&
          cert.verify(s.ca.publicKey) &&
          Date.parse(cert.validFrom) <= now &&
          now <= Date.parse(cert.validTo);
        if (!trusted) return deny('the client certificate is not issued by the configured CA');
      } else if (!facts.peerVerified) {
        return deny(
          'the client certificate was not verified (set requestCert and rejectUnauthorized, or caFile)',
        );
      }
      const name = pickName(cert, s.name);
      if (!name) return deny(`the client certificate has no ${s.name} name`);
      if (s.clientId === 'none') return allow({ name });
      if (s.clientId === 'hash') return allow({ name, clientId: hashClientId(name) });
      const uri = subjectAltNames(cert).find(([t, v]) => t === 'URI' && CLIENT_ID_URI.test(v));
      if (!uri) return deny('the client certificate has no urn:geminio:client-id: URI');
      return allow({ name, clientId: CLIENT_ID_URI.exec(uri[1])![1]! });
    },
  },
});
