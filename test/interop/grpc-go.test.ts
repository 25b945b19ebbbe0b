/**
 * A Go gRPC client (google.golang.org/grpc, test/interop/grpc-go) through the two sidecars to the grpc-js echo
 * server: unary with metadata both ways and a custom trailer, server streaming, an error with its message, and a
 * deadline (issue 16). The program is its own Go module (so the geminio peer's module keeps its Go version).
 */
import { execFile } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hasOpenssl, makeCert } from '../helpers/tls.js';
import { type EchoServer, startEchoServer } from '../sidecar/grpc-helpers.js';
import { type App, metricValue, type Pair, startApp, startPair } from '../sidecar/helpers.js';
import { goAvailable, goEnv, interopDir } from './go-peer.js';

const exec = promisify(execFile);
const binary = join(interopDir, 'bin', 'grpc-go-client');

describe.skipIf(!goAvailable && !process.env.CI)('a Go gRPC client through two sidecars', () => {
  let app: App;
  let echo: EchoServer;
  let pair: Pair;
  /** The same pair with TLS (ALPN h2) on the outbound listener, when openssl can make a certificate. */
  let tlsPair: Pair | undefined;
  const certDir = mkdtempSync(join(tmpdir(), 'geminio-grpc-go-'));

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
    if (hasOpenssl) {
      makeCert(certDir, '5a');
      tlsPair = await startPair(app, undefined, {
        services: { grpc: { target: `h2c://127.0.0.1:${echo.port}` } },
        web: {
          service: 'grpc',
          tls: { enabled: true, certFile: join(certDir, 'tls.crt'), keyFile: join(certDir, 'tls.key') },
        },
      });
    }
  }, 300_000);

  afterAll(async () => {
    await tlsPair?.close();
    await pair?.close();
    await echo?.close();
    await app?.close();
  });

  const expected = {
    unary: 'hello from go',
    echoedHeader: 'go',
    trailer: 'bye',
    streamCount: 100,
    streamBytes: 1_000_000,
    errorCode: 'InvalidArgument',
    errorMessage: 'bad request: fail',
    deadlineCode: 'DeadlineExceeded',
  };

  // The listener's certificate is made with openssl (test/helpers/tls.ts); CI has it.
  it.skipIf(!hasOpenssl && !process.env.CI)(
    'the same over TLS: ALPN h2, the listener certificate verified by Go',
    async () => {
      const port = new URL(tlsPair!.web).port;
      const { stdout } = await exec(binary, ['-addr', `127.0.0.1:${port}`, '-ca', join(certDir, 'tls.crt')], {
        timeout: 60_000,
      });
      expect(JSON.parse(stdout)).toEqual(expected);
      expect(
        await metricValue(tlsPair!.outbound, 'geminio_http_requests_by_protocol_total', {
          listener: 'web',
          protocol: 'h2',
        }),
      ).toBeGreaterThanOrEqual(1);
    },
    90_000,
  );

  it('unary, metadata both ways, a trailer, server streaming, an error and a deadline', async () => {
    const { stdout } = await exec(binary, ['-addr', `127.0.0.1:${new URL(pair.web).port}`], {
      timeout: 60_000,
    });
    expect(JSON.parse(stdout)).toEqual(expected);
  }, 90_000);
});
