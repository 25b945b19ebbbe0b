/**
 * The checks a config must pass before the sidecar binds anything, beyond its shape: the files it names exist and
 * parse (TLS certificates, keys and CAs, token files), certificates match their keys, plugins load and pass their
 * own validation (their `setup` with the configured options), and listen addresses resolve. `check-config`, `run`
 * and every reload run the same checks, so what check-config passes, run accepts.
 */
import { lookup } from 'node:dns/promises';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { parseAddress } from '../../sdk/index.js';
import { readTlsMaterial, targetTlsConfig } from '../net/tls.js';
import { silentLogger } from '../observe/logger.js';
import { Metrics } from '../observe/metrics.js';
import { Authz } from '../policy/authz.js';
import { ConfigError, coveredBy, type Override, readConfig, withSources } from './load.js';
import type { SidecarConfig, TlsConfig } from './schema.js';
import type { ConfigProblem } from './validate.js';

/**
 * Loads a config file as `run` does and runs every check on it: the schema, the keys that refer to each other, and
 * (for the keys that passed those) the files, plugins and hosts. Throws one ConfigError with all the problems.
 */
export async function loadRunnable(
  file: string,
  options: { env?: NodeJS.ProcessEnv; flags?: Override[] } = {},
): Promise<SidecarConfig> {
  const { config, problems, sources } = readConfig(file, options);
  const more = (await preflight(config)).filter((p) => !coveredBy(p.path, problems));
  const all = [...problems, ...withSources(more, sources)];
  if (all.length > 0) throw new ConfigError(all, file);
  return config;
}

/**
 * Every problem with the files, plugins and hosts a config names, in one round (an empty list when it can run).
 * The config may still hold values the schema refused: only values of the right type are looked at.
 */
export async function preflight(config: SidecarConfig): Promise<ConfigProblem[]> {
  const problems: ConfigProblem[] = [];
  const tlsOf = (t: TlsConfig | undefined, path: string) => {
    if (t?.enabled === true) problems.push(...readTlsMaterial(stringsOnly(t), path).problems);
  };
  for (const [n, u] of Object.entries(config.upstreams)) {
    tlsOf(u?.tls, `upstreams.${n}.tls`);
    if (typeof u?.tokenFile === 'string') {
      const path = `upstreams.${n}.tokenFile`;
      try {
        if (readFileSync(u.tokenFile, 'utf8').trim() === '')
          problems.push({ path, value: u.tokenFile, expected: 'a file with a token (it is empty)' });
      } catch (err) {
        problems.push({ path, value: u.tokenFile, expected: `a readable file (${(err as Error).message})` });
      }
    }
  }
  tlsOf(config.inbound?.tls, 'inbound.tls');
  for (const [i, l] of (config.outbound?.http ?? []).entries()) tlsOf(l?.tls, `outbound.http[${i}].tls`);
  for (const [n, s] of Object.entries(config.services)) {
    if (typeof s?.target === 'string' && s.target.startsWith('h2://') && s.tls)
      tlsOf(targetTlsConfig(s.tls), `services.${n}.tls`);
  }
  problems.push(...(await checkListenHosts(config)));
  problems.push(...(await checkPlugins(config)));
  return problems;
}

function stringsOnly(t: TlsConfig): TlsConfig {
  const file = (f: unknown) => (typeof f === 'string' ? f : undefined);
  return { ...t, caFile: file(t.caFile), certFile: file(t.certFile), keyFile: file(t.keyFile) };
}

// The addresses the sidecar binds must name a local address now; the ones it dials may resolve later (a
// Kubernetes Service that does not exist yet), so they are not looked up.
async function checkListenHosts(c: SidecarConfig): Promise<ConfigProblem[]> {
  const listens: Array<[string, unknown]> = [['admin.listen', c.admin?.listen]];
  if (c.inbound) listens.push(['inbound.listen', c.inbound.listen]);
  for (const [i, l] of (c.outbound?.http ?? []).entries())
    listens.push([`outbound.http[${i}].listen`, l?.listen]);
  for (const [i, l] of (c.outbound?.tcp ?? []).entries())
    listens.push([`outbound.tcp[${i}].listen`, l?.listen]);
  for (const [i, l] of c.tunnels.entries()) listens.push([`tunnels[${i}].listen`, l?.listen]);
  const problems = await Promise.all(
    listens.map(async ([path, address]): Promise<ConfigProblem | undefined> => {
      let host: string;
      try {
        host = parseAddress(String(address)).host;
      } catch {
        return undefined; // the schema reports it
      }
      if (net.isIP(host)) return undefined;
      try {
        await lookup(host);
        return undefined;
      } catch (err) {
        const why = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
        return { path, value: address, expected: `a host that resolves to a local address (${why})` };
      }
    }),
  );
  return problems.filter((p) => p !== undefined);
}

/** Loads every plugin as `run` would (import, validation, setup with its options), then closes them. */
async function checkPlugins(c: SidecarConfig): Promise<ConfigProblem[]> {
  const problems: ConfigProblem[] = [];
  const authz = new Authz(new Metrics({ defaults: false }), silentLogger());
  for (const [i, p] of c.plugins.entries()) {
    if (typeof p?.path !== 'string' || !/\S/.test(p.path)) continue; // the schema reports it
    try {
      await authz.load([p], c.configDir ?? process.cwd(), i);
    } catch (err) {
      problems.push({
        path: `plugins[${i}]`,
        value: p.path,
        expected: `a plugin that loads and sets up (${(err as Error).message})`,
      });
    }
  }
  await authz.close();
  return problems;
}
