// examples/brpc-client.ts
// Bidirectional RPC: registers "client-echo" before dial() resolves, waits for the server's "server-echo", calls
// it, and stays until the server has called it back (Go: examples/usage/brpc/client).
import { dial, type RpcRequest } from '../sdk/index.js';

const address = process.argv[2] ?? process.env.GEMINIO_ADDR ?? '127.0.0.1:8080';
let calledBack: () => void = () => {};
const served = new Promise<void>((resolve) => (calledBack = resolve));
const echo = ({ data }: RpcRequest) => {
  console.log(`client echo: ${data}`);
  calledBack();
  return data;
};
const end = await dial(address, {
  registerLocalRpcs: { 'client-echo': echo },
  waitRemoteRpcs: ['server-echo'],
});
const rsp = await end.call('server-echo', 'bar');
if (rsp.data.toString() !== 'bar') throw new Error(`wrong echo: ${rsp.data}`);
console.log(`server echo: ${rsp.data}`);
await served;
await end.close();
