/**
 * A Go gRPC client (google.golang.org/grpc, test/interop/grpc-go) through the two sidecars to the grpc-js echo
 * server: unary with metadata both ways and a custom trailer, server streaming, an error with its message, and a
 * deadline (issue 16). The program is its own Go module (so the geminio peer's module keeps its Go version).
 */
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type EchoServer, startEchoServer } from '../sidecar/grpc-helpers.js';
import { type App, type Pair, startApp, startPair } from '../sidecar/helpers.js';
import { goAvailable, goEnv, interopDir } from './go-peer.js';

const exec = promisify(execFile);
const binary = join(interopDir, 'bin', 'grpc-go-client');

describe.skipIf(!goAvailable && !process.env.CI)('a Go gRPC client through two sidecars', () => {
  let app: App;
  let echo: EchoServer;
  let pair: Pair;

  beforeAll(async () => {
    expect(goAvailable, 'go is not on PATH (required in CI)').toBe(true);
    await exec('go', ['build', '-o', binary, '.'], {
      cwd: join(interopDir, 'grpc-go'),
      env: { ...goEnv(), GOFLAGS: `${goEnv().GOFLAGS ?? ''} -mod=mod`.trim() },
      timeout: 240_000,
    });
    app = await startApp(1024);
    echo = await startEchoServer();
    pair = await startPair(app, undefined, {
      services: { grpc: { target: `h2c://127.0.0.1:${echo.port}` } },
      web: { service: 'grpc' },
    });
  }, 300_000);

  afterAll(async () => {
    await pair?.close();
    await echo?.close();
    await app?.close();
  });

  it('unary, metadata both ways, a trailer, server streaming, an error and a deadline', async () => {
    const { stdout } = await exec(binary, ['-addr', `127.0.0.1:${new URL(pair.web).port}`], {
      timeout: 60_000,
    });
    const r = JSON.parse(stdout) as Record<string, unknown>;
    expect(r).toEqual({
      unary: 'hello from go',
      echoedHeader: 'go',
      trailer: 'bye',
      streamCount: 100,
      streamBytes: 1_000_000,
      errorCode: 'InvalidArgument',
      errorMessage: 'bad request: fail',
      deadlineCode: 'DeadlineExceeded',
    });
  }, 90_000);
});
