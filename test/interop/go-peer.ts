// Driver for the Go interop peer (test/interop/geminio-peer, built on the Go
// geminio library). It spawns the binary, turns its stdout JSON lines into
// events, and sends line commands on its stdin. See geminio-peer/main.go and
// geminio-peer/commands.go for the flags, events and commands.

import { type ChildProcessWithoutNullStreams, execFile, spawn, spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const interopDir: string = dirname(fileURLToPath(import.meta.url));

export const peerBinary: string = join(
  interopDir,
  'bin',
  process.platform === 'win32' ? 'geminio-peer.exe' : 'geminio-peer',
);

/** Whether a Go toolchain (`go`) is on PATH. */
export const goAvailable: boolean = (() => {
  try {
    return spawnSync('go', ['version'], { stdio: 'ignore', timeout: 30_000 }).status === 0;
  } catch {
    return false;
  }
})();

function withFlag(list: string | undefined, item: string, sep: string): string {
  if (!list) return item;
  return list.split(sep).includes(item) ? list : `${list}${sep}${item}`;
}

/** Environment for go commands: geminio v1.1.8 is unknown to the checksum DB (go.sum pins it). */
export function goEnv(base: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  const env = { ...base };
  env.GONOSUMDB = withFlag(env.GONOSUMDB, 'github.com/singchia/geminio', ',');
  if (!env.GOFLAGS?.includes('-buildvcs')) env.GOFLAGS = withFlag(env.GOFLAGS, '-buildvcs=false', ' ');
  return env;
}

/** Builds bin/geminio-peer; rejects with go's output on failure. */
export function buildGoPeer(): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(
      'go',
      ['build', '-o', peerBinary, './geminio-peer'],
      { cwd: interopDir, env: goEnv(), timeout: 10 * 60_000, maxBuffer: 16 * 1024 * 1024 },
      (err, stdout, stderr) => {
        if (err) {
          reject(new Error(`go build of the interop peer failed: ${err.message}\n${stdout}${stderr}`));
        } else {
          resolve();
        }
      },
    );
  });
}

/** One parsed stdout line; `event` is always present. IDs are decimal strings. */
// biome-ignore lint/suspicious/noExplicitAny: loosely typed JSON from the peer; tests read fields directly
export type PeerEvent = Record<string, any> & { event: string };

export interface GoPeerOptions {
  /** Extra environment for the child. */
  env?: NodeJS.ProcessEnv;
  /** Name used in error messages (default: the -role value). */
  label?: string;
  /** Copy the child's stderr to ours as it arrives (also enabled by GEMINIO_PEER_DEBUG=1). */
  echoStderr?: boolean;
}

interface Waiter {
  event: string;
  pred: ((e: PeerEvent) => boolean) | undefined;
  resolve: (e: PeerEvent) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
}

const STDERR_KEEP = 64 * 1024;
const STDOUT_KEEP_LINES = 60;

const running = new Set<GoPeer>();
process.once('exit', () => {
  for (const peer of running) peer.kill();
});

export class GoPeer {
  /** Every event received so far, in order (consumed or not). */
  readonly events: PeerEvent[] = [];
  /** Resolves with the exit code (null if killed by a signal). */
  readonly exited: Promise<number | null>;
  readonly label: string;
  /** Listen address, set by GoPeer.server(). */
  addr = '';

  private readonly child: ChildProcessWithoutNullStreams;
  private readonly consumed = new Set<number>();
  private waiters: Waiter[] = [];
  private stdoutBuf = '';
  private stdoutTail: string[] = [];
  private stderrBuf = '';
  private closed = false;
  private exitCode: number | null | undefined;

  private constructor(args: string[], opts: GoPeerOptions) {
    const roleIdx = args.indexOf('-role');
    this.label = opts.label ?? (roleIdx >= 0 ? `go-${args[roleIdx + 1] ?? 'peer'}` : 'go-peer');
    const echoStderr = opts.echoStderr ?? process.env.GEMINIO_PEER_DEBUG === '1';
    this.child = spawn(peerBinary, args, {
      cwd: interopDir,
      env: { ...process.env, ...opts.env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    running.add(this);
    this.child.stdout.setEncoding('utf8');
    this.child.stderr.setEncoding('utf8');
    this.child.stdout.on('data', (chunk: string) => this.onStdout(chunk));
    this.child.stderr.on('data', (chunk: string) => {
      if (echoStderr) process.stderr.write(`[${this.label}] ${chunk}`);
      this.stderrBuf = (this.stderrBuf + chunk).slice(-STDERR_KEEP);
    });
    // A write after the child died raises EPIPE on stdin; report it through waitFor instead.
    this.child.stdin.on('error', () => {});
    this.exited = new Promise((resolve) => {
      this.child.once('exit', (code) => {
        this.exitCode = code;
        running.delete(this);
        resolve(code);
      });
    });
    // 'close' fires after stdout has been fully read: fail whatever is still waiting.
    this.child.once('close', (code, signal) => {
      this.closed = true;
      const why = `${this.label} exited (code ${code}, signal ${signal})`;
      for (const w of this.waiters) {
        clearTimeout(w.timer);
        w.reject(new Error(`${why} while waiting for "${w.event}"\n${this.tails()}`));
      }
      this.waiters = [];
    });
  }

  /** Spawns the peer binary; resolves once the process is running. */
  static async start(args: string[], opts: GoPeerOptions = {}): Promise<GoPeer> {
    const peer = new GoPeer(args, opts);
    await new Promise<void>((resolve, reject) => {
      peer.child.once('spawn', () => resolve());
      peer.child.once('error', (err) =>
        reject(new Error(`cannot start ${peerBinary} (run buildGoPeer() first?): ${err.message}`)),
      );
    });
    return peer;
  }

  /** Starts `-role server` (listening on 127.0.0.1:0 unless -addr is given) and waits for "listening". */
  static async server(args: string[] = [], opts: GoPeerOptions = {}): Promise<GoPeer> {
    const peer = await GoPeer.start(['-role', 'server', ...args], opts);
    try {
      const ev = await peer.waitFor('listening');
      peer.addr = String(ev.addr);
    } catch (err) {
      await peer.stop();
      throw err;
    }
    return peer;
  }

  /** Starts `-role client -addr ADDR`; wait for its "end" (or "error") event yourself. */
  static client(addr: string, args: string[] = [], opts: GoPeerOptions = {}): Promise<GoPeer> {
    return GoPeer.start(['-role', 'client', '-addr', addr, ...args], opts);
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  /**
   * Resolves with the first matching event not consumed by an earlier waitFor,
   * whether it already arrived or arrives later, and marks it consumed.
   * Rejects on timeout or when the peer exits, with the tail of its output.
   */
  waitFor(event: string, pred?: (e: PeerEvent) => boolean, timeoutMs = 20_000): Promise<PeerEvent> {
    for (let i = 0; i < this.events.length; i++) {
      const e = this.events[i];
      if (e && !this.consumed.has(i) && e.event === event && (!pred || pred(e))) {
        this.consumed.add(i);
        return Promise.resolve(e);
      }
    }
    if (this.closed) {
      return Promise.reject(new Error(`${this.label} has exited; no "${event}" event\n${this.tails()}`));
    }
    return new Promise((resolve, reject) => {
      const waiter: Waiter = {
        event,
        pred,
        resolve,
        reject,
        timer: setTimeout(() => {
          this.waiters = this.waiters.filter((w) => w !== waiter);
          reject(
            new Error(
              `${this.label}: timed out after ${timeoutMs} ms waiting for "${event}"\n${this.tails()}`,
            ),
          );
        }, timeoutMs),
      };
      this.waiters.push(waiter);
    });
  }

  /** Events seen so far with this name (consumed or not). */
  all(event: string): PeerEvent[] {
    return this.events.filter((e) => e.event === event);
  }

  /** Sends one command line (no trailing newline needed). */
  send(line: string): void {
    if (this.closed || this.child.stdin.destroyed || this.child.stdin.writableEnded) {
      throw new Error(`${this.label}: cannot send "${line}", the peer's stdin is closed\n${this.tails()}`);
    }
    this.child.stdin.write(`${line}\n`);
  }

  /**
   * Sends a command and waits for its result event. The peer runs commands in
   * order, one at a time; with the "async " prefix they run concurrently, so
   * give pred when several results with the same event name can be pending.
   */
  async request(
    line: string,
    resultEvent: string,
    pred?: (e: PeerEvent) => boolean,
    timeoutMs?: number,
  ): Promise<PeerEvent> {
    const result = this.waitFor(resultEvent, pred, timeoutMs);
    this.send(line);
    return result;
  }

  /** Sends "quit", closes stdin, waits up to 2 s, then SIGKILLs. */
  async stop(): Promise<number | null> {
    if (this.exitCode === undefined) {
      try {
        if (!this.child.stdin.writableEnded) {
          this.child.stdin.write('quit\n');
          this.child.stdin.end();
        }
      } catch {
        // already gone
      }
      let timer: NodeJS.Timeout | undefined;
      const timedOut = await Promise.race([
        this.exited.then(() => false),
        new Promise<boolean>((resolve) => {
          timer = setTimeout(() => resolve(true), 2_000);
        }),
      ]);
      clearTimeout(timer);
      if (timedOut) this.kill();
    }
    return this.exited;
  }

  /** SIGKILLs the process at once (e.g. to simulate a crash). */
  kill(): void {
    if (this.exitCode === undefined) this.child.kill('SIGKILL');
  }

  /** The last stdout lines and stderr, for error messages. */
  tails(): string {
    return (
      `--- ${this.label} stdout (last ${STDOUT_KEEP_LINES} lines) ---\n${this.stdoutTail.join('\n')}\n` +
      `--- ${this.label} stderr (tail) ---\n${this.stderrBuf.slice(-8 * 1024)}`
    );
  }

  private onStdout(chunk: string): void {
    this.stdoutBuf += chunk;
    let nl = this.stdoutBuf.indexOf('\n');
    while (nl >= 0) {
      const line = this.stdoutBuf.slice(0, nl).trim();
      this.stdoutBuf = this.stdoutBuf.slice(nl + 1);
      if (line) this.onLine(line);
      nl = this.stdoutBuf.indexOf('\n');
    }
  }

  private onLine(line: string): void {
    this.stdoutTail.push(line);
    if (this.stdoutTail.length > STDOUT_KEEP_LINES) this.stdoutTail.shift();
    let ev: PeerEvent;
    try {
      const parsed: unknown = JSON.parse(line);
      if (
        !parsed ||
        typeof parsed !== 'object' ||
        typeof (parsed as { event?: unknown }).event !== 'string'
      ) {
        return;
      }
      ev = parsed as PeerEvent;
    } catch {
      return; // not ours (the peer only prints JSON on stdout); kept in the tail for diagnostics
    }
    const index = this.events.push(ev) - 1;
    const waiter = this.waiters.find((w) => w.event === ev.event && (!w.pred || w.pred(ev)));
    if (waiter) {
      this.consumed.add(index);
      this.waiters = this.waiters.filter((w) => w !== waiter);
      clearTimeout(waiter.timer);
      waiter.resolve(ev);
    }
  }
}
