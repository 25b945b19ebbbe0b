/**
 * The gRPC app of the gRPC rows, in its own process:
 *
 *   node --import tsx bench/grpc-app.ts
 *
 * The grpc-js echo server of the HTTP/2 tests (test/sidecar/grpc-helpers.ts: raw-byte messages, metadata echoed in
 * the head and a custom trailer) on 127.0.0.1, plaintext h2c. Prints {"host","port","pid"} once listening; exits
 * when stdin closes.
 */
import { startEchoServer } from '../test/sidecar/grpc-helpers.js';
import { emit } from './lib.js';

const server = await startEchoServer();
emit({ host: '127.0.0.1', port: server.port, pid: process.pid });
process.stdin.resume();
process.stdin.on('end', () => {
  void server.close().finally(() => process.exit(0));
  setTimeout(() => process.exit(0), 2_000).unref();
});
