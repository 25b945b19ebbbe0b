// examples/message-client.ts
// Publishes one message and waits for the server's acknowledgement (Go: examples/usage/message/client).
import { dial } from '../sdk/index.js';

const address = process.argv[2] ?? process.env.GEMINIO_ADDR ?? '127.0.0.1:8080';
const end = await dial(address);
await end.publish('hello'); // resolves once the receiver called msg.done()
console.log('published: hello');
await end.close();
