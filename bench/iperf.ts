/**
 * iperf3 on loopback: the physical limit beside the stream rows (issue 14). A one-off server
 * (`iperf3 -s -1 -B 127.0.0.1 -p PORT --forceflush`) and a client (`iperf3 -c 127.0.0.1 -p PORT -l 128K -P N
 * -O WARMUP -t SECONDS -J`), two processes; the value is what the receiver got (`end.sum_received`), in MB/s
 * (10^6 bytes). iperf3 takes whole seconds, so the warm-up and the window are rounded up to seconds. iperf3 comes
 * from the Debian package when absent (bench/debian.ts), or the anchor is reported missing.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { ensureDebianBinary, firstLine, run } from './debian.js';
import { freePort, type Timing } from './lib.js';

export interface IperfResult {
  value: number | null;
  note?: string;
}

function waitListening(server: ChildProcess, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`iperf3 server not listening: ${out}`)), timeoutMs);
    const onData = (chunk: Buffer) => {
      out += chunk.toString();
      if (out.includes('listening')) {
        clearTimeout(timer);
        resolve();
      }
    };
    server.stdout!.on('data', onData);
    server.stderr!.on('data', onData);
    server.once('close', (code) => {
      clearTimeout(timer);
      reject(new Error(`iperf3 server exited (${code}): ${out}`));
    });
  });
}

/** MB/s through `streams` parallel loopback TCP streams, 128 KiB writes. Never throws. */
export async function runIperf3(
  streams: number,
  timing: Timing,
  log: (msg: string) => void,
): Promise<IperfResult> {
  const { bin, note } = await ensureDebianBinary('iperf3', ['iperf3'], log);
  if (!bin) return { value: null, note: note ?? 'iperf3 unavailable' };
  log(`  iperf3 -P ${streams}`);
  let server: ChildProcess | undefined;
  try {
    const port = await freePort();
    server = spawn(bin, ['-s', '-1', '-B', '127.0.0.1', '-p', String(port), '--forceflush'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    await waitListening(server, 10_000);
    const omit = Math.max(1, Math.ceil(timing.warmupMs / 1000));
    const secs = Math.max(1, Math.ceil(timing.durationMs / 1000));
    const out = await run(
      bin,
      [
        '-c',
        '127.0.0.1',
        '-p',
        String(port),
        '-l',
        '128K',
        '-P',
        String(streams),
        '-O',
        String(omit),
        '-t',
        String(secs),
        '-J',
      ],
      60_000,
    );
    const json = JSON.parse(out.slice(out.indexOf('{'))) as {
      end?: { sum_received?: { bits_per_second?: number } };
      error?: string;
    };
    if (json.error) throw new Error(json.error);
    const bps = json.end?.sum_received?.bits_per_second;
    if (typeof bps !== 'number') throw new Error('no end.sum_received in the iperf3 output');
    return { value: bps / 8 / 1e6 };
  } catch (err) {
    log(`    iperf3 FAILED: ${firstLine(err)}`);
    return { value: null, note: `iperf3 anchor failed: ${firstLine(err)}` };
  } finally {
    if (server && server.exitCode === null) server.kill('SIGKILL');
  }
}
