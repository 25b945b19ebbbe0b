// examples/rpc-client.ts
// Waits until the server has registered "echo", then calls it (Go: examples/usage/rpc/client).
import { dial } from '../sdk/index.js';

const address = process.argv[2] ?? process.env.GEMINIO_ADDR ?? '127.0.0.1:8080';
const end = await dial(address, { waitRemoteRpcs: ['echo'] });
const rsp = await end.call('echo', 'hello');
if (rsp.data.toString() !== 'hello') throw new Error(`wrong echo: ${rsp.data}`);
console.log(`echo: ${rsp.data}`);
await end.close();
