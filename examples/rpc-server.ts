// examples/rpc-server.ts
// Registers "echo" on every End that connects (Go: examples/usage/rpc/server).
import { listen } from '../sdk/index.js';

const address = process.argv[2] ?? process.env.GEMINIO_ADDR ?? '127.0.0.1:8080';
const listener = await listen(address);
const { host, port } = listener.address();
console.log(`listening on ${host}:${port}`);

for await (const end of listener) {
  end
    .register('echo', ({ data }) => {
      console.log(`echo: ${data}`);
      return data;
    })
    .catch((err) => console.error(`register err: ${err}`));
}
