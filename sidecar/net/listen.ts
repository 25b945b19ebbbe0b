/** Address helpers (the SDK's parser is internal, and the sidecar needs one for its own servers). */
import type net from 'node:net';

/** Splits `host:port` or `[v6]:port`; an empty host means 127.0.0.1. */
export function parseHostPort(address: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(address.trim());
  if (!m) throw new Error(`invalid address "${address}": expected host:port`);
  return { host: m[1] ?? (m[2] || '127.0.0.1'), port: Number(m[3]) };
}

/** Binds a server; rejects with the bind error (EADDRINUSE and the like) naming the address. */
export function listenOn(server: net.Server, address: string): Promise<net.AddressInfo> {
  const { host, port } = parseHostPort(address);
  return new Promise((resolve, reject) => {
    const onError = (err: Error) =>
      reject(new Error(`cannot listen on ${address}: ${err.message}`, { cause: err }));
    server.once('error', onError);
    server.listen(port, host, () => {
      server.off('error', onError);
      resolve(server.address() as net.AddressInfo);
    });
  });
}
