/** Binding the sidecar's own servers to a configured address (parsed by the SDK's parseAddress). */
import type net from 'node:net';
import { parseAddress } from '../../sdk/index.js';

/** Binds a server; rejects with the bind error (EADDRINUSE and the like) naming the address. */
export function listenOn(server: net.Server, address: string): Promise<net.AddressInfo> {
  const { host, port } = parseAddress(address);
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
