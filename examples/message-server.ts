// examples/message-server.ts
// Receives one message on every End that connects and acknowledges it (Go: examples/usage/message/server).
import { listen } from '../sdk/index.js';

const address = process.argv[2] ?? process.env.GEMINIO_ADDR ?? '127.0.0.1:8080';
const listener = await listen(address);
const { host, port } = listener.address();
console.log(`listening on ${host}:${port}`);

for await (const end of listener) {
  (async () => {
    const msg = await end.receive();
    console.log(`end receive: ${msg.data}`);
    msg.done(); // the publisher's publish() resolves now
  })().catch((err) => console.error(`receive err: ${err}`));
}
