import { dial, listen } from '../sdk/index.js'; // in your project: from 'geminio'

// A server: every End that connects can call `hello` and gets a stream from us.
const listener = await listen('127.0.0.1:0');
(async () => {
  for await (const end of listener) {
    await end.register('hello', ({ data, clientId }) => `hello ${data}, you are client ${clientId}`);
    (async () => {
      for await (const msg of end.messages()) {
        console.log(`server got message "${msg.data}" on topic ${msg.topic}`);
        msg.done(); // acknowledge: the publisher's promise resolves
      }
    })();
    const stream = await end.openStream({ meta: 'greetings' });
    stream.end('bytes from the server');
  }
})();

// A client: RPC, an acknowledged message, and a stream the server opened.
const end = await dial(listener.address(), { meta: 'example-client', reconnect: true });
const reply = await end.call('hello', 'world', { timeout: 5_000 });
console.log(reply.data.toString());
await end.publish('ping', { topic: 'demo' });
const stream = await end.acceptStream();
for await (const chunk of stream) console.log(`stream "${stream.meta}": ${chunk}`);

await end.close();
await listener.close();
