// examples/multiplexer-client.ts
// The End is the listener of the streams the server opens: reads each one to its end, and stops after two
// (Go: examples/usage/multiplexer/client).
import { dial } from '../sdk/index.js';

const address = process.argv[2] ?? process.env.GEMINIO_ADDR ?? '127.0.0.1:8080';
const end = await dial(address);
let streams = 0;
for await (const stream of end.streams()) {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk);
  console.log(`read: ${Buffer.concat(chunks)}`);
  if (++streams === 2) break;
}
await end.close();
