// examples/brpc-server.ts
// Bidirectional RPC: every End gets "server-echo" registered before it is accepted, and is accepted only once the
// client has registered "client-echo"; the server then calls the client (Go: examples/usage/brpc/server).
import { listen, type RpcRequest } from '../sdk/index.js';

const address = process.argv[2] ?? process.env.GEMINIO_ADDR ?? '127.0.0.1:8080';
const echo = ({ data }: RpcRequest) => {
  console.log(`server echo: ${data}`);
  return data;
};
const listener = await listen(address, {
  registerLocalRpcs: { 'server-echo': echo },
  waitRemoteRpcs: ['client-echo'],
});
const { host, port } = listener.address();
console.log(`listening on ${host}:${port}`);

for await (const end of listener) {
  (async () => {
    const rsp = await end.call('client-echo', 'foo');
    if (rsp.data.toString() !== 'foo') throw new Error(`wrong echo: ${rsp.data}`);
    console.log(`client echo: ${rsp.data}`);
  })().catch((err) => console.error(`call err: ${err}`));
}
