/**
 * Runs a Sidecar as the process: SIGTERM/SIGINT shut down gracefully (a second signal exits at once), SIGHUP or a
 * change in a watched directory reloads the config file and the files it names (a bad set keeps the running one
 * and says why).
 */
import path from 'node:path';
import v8 from 'node:v8';
import vm from 'node:vm';
import { ConfigError, type Override } from './config/load.js';
import { loadRunnable } from './config/preflight.js';
import type { SidecarConfig } from './config/schema.js';
import { watchDirectories } from './config/watch.js';
import { Sidecar } from './main.js';
import { createLogger, loadPretty } from './observe/logger.js';
import type { Inflight } from './proxy/inflight.js';

export interface RunOptions {
  file: string;
  /** Overrides from flags, applied after the environment: [path, value, source]. */
  flags: Override[];
  env: NodeJS.ProcessEnv;
}

/** Loads, starts, and wires the signals. Resolves once started; the process exits after a shutdown. */
export async function runProcess(options: RunOptions): Promise<Sidecar> {
  // The same checks as check-config, before anything binds: an invalid config exits 2 with the same messages.
  const load = () => loadRunnable(options.file, { env: options.env, flags: options.flags });
  const config = await load();
  await loadPretty(config.log);
  const logger = createLogger(config.log);
  const sidecar = new Sidecar(config, { logger });
  await sidecar.start();
  const collector = idleCollector({
    inflight: sidecar.inflight,
    idleMs: () => sidecar.config.memory.idleGcMs,
    gc: fullGc(),
    onCollect: (before, after) =>
      logger.debug({ rssBefore: before, rssAfter: after }, 'idle: heap collected'),
  });

  let stopping = false;
  let watcher: { close(): void } | undefined;
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) {
      logger.warn({ signal }, 'second signal: exiting now');
      process.exit(1);
    }
    stopping = true;
    watcher?.close();
    collector.stop();
    logger.info({ signal }, 'signal received');
    // A drain that runs out of time still ends in order (what was cut is counted and logged): exit 0. Only a
    // shutdown that itself breaks exits 1.
    sidecar.shutdown().then(
      () => {
        logger.flush();
        process.exit(0);
      },
      (err: Error) => {
        logger.error({ err: err.message }, 'shutdown failed');
        logger.flush();
        process.exit(1);
      },
    );
  };

  // Reloads run one at a time; a trigger during a reload runs one more afterwards.
  let running: Promise<void> | undefined;
  let again = false;
  const reload = async (trigger: string): Promise<void> => {
    if (stopping) return;
    if (running) {
      again = true;
      return;
    }
    running = (async () => {
      do {
        again = false;
        let next: Awaited<ReturnType<typeof load>>;
        try {
          next = await load();
        } catch (err) {
          sidecar.metrics.reloads.inc({ outcome: 'invalid' });
          const message = err instanceof ConfigError ? err.message : (err as Error).message;
          logger.error(
            { err: message, trigger },
            'reload refused: the new config is invalid; keeping the running one',
          );
          continue;
        }
        logger.info({ file: options.file, trigger }, 'reloading config');
        await sidecar.reload(next);
        watcher = rewatch(watcher, next);
      } while (again && !stopping);
    })().finally(() => {
      running = undefined;
    });
    await running;
  };
  const rewatch = (old: { close(): void } | undefined, c: typeof config) => {
    old?.close();
    if (!c.reload.watchFiles) return undefined;
    return watchDirectories(
      watchedFiles(options.file, c),
      () => void reload('file'),
      (err, dir) =>
        logger.warn({ err: err.message, dir }, 'cannot watch a directory; changes there need SIGHUP'),
    );
  };
  watcher = rewatch(undefined, config);

  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  process.on('SIGHUP', () => void reload('SIGHUP'));
  return sidecar;
}

/** The config file and every file it names that a reload reads again. */
function watchedFiles(file: string, c: SidecarConfig): string[] {
  const files = [file];
  const tls = [
    c.inbound?.tls,
    ...Object.values(c.upstreams).map((u) => u.tls),
    ...c.outbound.http.map((l) => l.tls),
  ];
  for (const t of tls)
    if (t?.enabled) files.push(...[t.caFile, t.certFile, t.keyFile].filter((f) => f !== undefined));
  for (const u of Object.values(c.upstreams)) if (u.tokenFile) files.push(u.tokenFile);
  for (const p of c.plugins) {
    if (!p.path.startsWith('builtin:')) files.push(p.path);
    files.push(...optionFiles(p.options, c.configDir ?? process.cwd()));
  }
  return files;
}

/** Files named in plugin options: string values of keys ending in `File` (the token plugin's `secretFile`...). */
function optionFiles(value: unknown, dir: string): string[] {
  if (typeof value !== 'object' || value === null) return [];
  const out: string[] = [];
  for (const [k, v] of Object.entries(value)) {
    if (typeof v === 'string' && /File$/.test(k)) out.push(path.resolve(dir, v));
    else out.push(...optionFiles(v, dir));
  }
  return out;
}

/**
 * A full garbage collection: `gc` when the process runs with --expose-gc, otherwise the same function obtained at
 * run time (the flag set through v8, the function read from a fresh context), which Node offers no other way.
 */
export function fullGc(): () => void {
  const global = globalThis as { gc?: () => void };
  if (typeof global.gc === 'function') return global.gc;
  v8.setFlagsFromString('--expose-gc');
  return vm.runInNewContext('gc') as () => void;
}

export interface IdleCollectorOptions {
  inflight: Pick<Inflight, 'started' | 'size'>;
  /** Read at each check (a reload may change it); 0: never collect. */
  idleMs: () => number;
  gc: () => void;
  onCollect?: (rssBefore: number, rssAfter: number) => void;
  /** How often the work counter is read (default: a quarter of idleMs, 250 ms to 10 s). */
  checkEveryMs?: number;
}

/**
 * Two full GCs back to back. The first frees the dead objects, but V8 picks the pages to compact from what it knew
 * before that GC, so the pages it leaves sparse (a few long-lived objects among a load's garbage) stay committed
 * and resident until the next GC, which an idle process never runs; the second is that GC. Measured on the inbound
 * sidecar after load: old space 20.2 MB committed for 8.8 MB used after one (docs/SIDECAR.md "Memory").
 */
export function collectFully(gc: () => void): void {
  gc();
  gc();
}

/**
 * After a busy period, once nothing new started and nothing is in flight for `idleMs`, runs a full collection
 * (collectFully). Under load V8 grows its young generation (16 MiB semi-spaces and more) and old space; on a
 * process that then goes idle it gives them back only when its memory reducer's watchdog fires, about 100 s later.
 * One collection when the sidecar turns idle does it at once. No timer per request: a counter of work begun is
 * sampled.
 */
export function idleCollector(o: IdleCollectorOptions): { stop(): void } {
  let seen = o.inflight.started;
  let quietSince = Date.now();
  let dirty = false;
  const every = o.checkEveryMs ?? Math.min(10_000, Math.max(250, Math.floor(o.idleMs() / 4)));
  const timer = setInterval(() => {
    const idleMs = o.idleMs();
    const now = Date.now();
    if (o.inflight.started !== seen || o.inflight.size > 0) {
      seen = o.inflight.started;
      quietSince = now;
      dirty = true;
      return;
    }
    if (!dirty || idleMs <= 0 || now - quietSince < idleMs) return;
    dirty = false;
    const before = process.memoryUsage.rss();
    collectFully(o.gc);
    o.onCollect?.(before, process.memoryUsage.rss());
  }, every);
  timer.unref();
  return { stop: () => clearInterval(timer) };
}
