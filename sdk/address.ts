import { InvalidArgumentError } from './errors.js';

export interface HostPort {
  host: string;
  port: number;
}

/** An address as 'host:port', '[v6]:port', ':port', a port number, or { host, port }. */
export type Address = string | number | { host?: string; port: number };

/** Parses an address; `defaultHost` fills in a missing host. */
export function parseAddress(address: Address, defaultHost = '127.0.0.1'): HostPort {
  if (typeof address === 'number') return { host: defaultHost, port: checkPort(address, String(address)) };
  if (typeof address === 'object' && address !== null) {
    return { host: address.host || defaultHost, port: checkPort(address.port, JSON.stringify(address)) };
  }
  if (typeof address !== 'string') throw new InvalidArgumentError(`invalid address ${String(address)}`);
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(address.trim());
  if (!m) throw new InvalidArgumentError(`invalid address "${address}": expected host:port`);
  return { host: m[1] ?? (m[2] || defaultHost), port: checkPort(Number(m[3]), address) };
}

function checkPort(port: number, original: string): number {
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new InvalidArgumentError(`invalid port in address "${original}"`);
  }
  return port;
}
