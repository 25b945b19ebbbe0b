// vitest globalSetup: build the Go interop peer once per run, before any test
// file starts, so test files never run `go build` concurrently. Without a Go
// toolchain it does nothing (the interop suites skip themselves, or fail in CI).
import { buildGoPeer, goAvailable } from './go-peer.js';

export default async function setup(): Promise<void> {
  if (!goAvailable) return;
  await buildGoPeer();
}
