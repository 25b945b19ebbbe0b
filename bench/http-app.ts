/**
 * The small HTTP app of the sidecar rows, in its own process:
 *
 *   node --import tsx bench/http-app.ts
 *
 * Every GET answers 200 with the same 100-byte JSON body (content-length set, keep-alive). Prints
 * {"host","port","pid"} once listening; exits when stdin closes.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { emit, HTTP_BODY_SIZE } from './lib.js';

/** {"ok":true,"pad":"xxx..."}, exactly HTTP_BODY_SIZE bytes. */
function body(): Buffer {
  const head = '{"ok":true,"pad":"';
  const tail = '"}';
  return Buffer.from(`${head}${'x'.repeat(HTTP_BODY_SIZE - head.length - tail.length)}${tail}`);
}

const payload = body();
const server = http.createServer({ keepAliveTimeout: 60_000 }, (req, res) => {
  req.resume();
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': payload.length });
  res.end(payload);
});
server.listen(0, '127.0.0.1', () => {
  const { address, port } = server.address() as AddressInfo;
  emit({ host: address, port, pid: process.pid });
});
process.stdin.resume();
process.stdin.on('end', () => {
  server.closeAllConnections();
  server.close(() => process.exit(0));
});
