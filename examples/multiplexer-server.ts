// examples/multiplexer-server.ts
// Opens two streams on every End that connects, writes to each and closes it (Go: examples/usage/multiplexer/server).
import { listen } from '../sdk/index.js';

const address = process.argv[2] ?? process.env.GEMINIO_ADDR ?? '127.0.0.1:8080';
const listener = await listen(address);
const { host, port } = listener.address();
console.log(`listening on ${host}:${port}`);

for await (const end of listener) {
  (async () => {
    // A stream is a Duplex, like a net.Socket.
    const sm1 = await end.openStream();
    sm1.end('hello#1');
    const sm2 = await end.openStream();
    sm2.end('hello#2');
  })().catch((err) => console.error(`open stream err: ${err}`));
}
