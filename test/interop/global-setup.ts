// vitest globalSetup: build the Go interop peer once per run, before any test
// file starts, so test files never run `go build` concurrently. Without a Go
// toolchain it does nothing (the interop suites skip themselves, or fail in CI).
import { buildGoPeer, goAvailable } from './go-peer.js';

export default async function setup(): Promise<void> {
  if (!goAvailable) {
    const what = process.env.CI
      ? 'the interop suite will FAIL (CI requires it)'
      : 'the interop suite is skipped';
    console.warn(`[geminio] go is not on the PATH: ${what}. Install Go to test against the Go library.`);
    return;
  }
  await buildGoPeer();
}
