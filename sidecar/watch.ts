/**
 * Watches the directories of the files a config names, so a reload follows a change without a signal. Kubernetes
 * updates a mounted ConfigMap or Secret by writing a new timestamped directory and swapping the `..data` symlink
 * with one rename, so the files themselves are never written in place: watching each file's directory (not the
 * file, whose inode a swap replaces) sees that rename, an edit in place, and a file moved over another alike.
 */
import { type FSWatcher, watch } from 'node:fs';
import path from 'node:path';

/** How long a burst of events (a swap is several renames) is gathered into one call. */
const SETTLE_MS = 200;

/** Calls `onChange` once after each burst of changes in the directories of `files`. */
export function watchDirectories(
  files: readonly string[],
  onChange: () => void,
  onError: (err: Error, dir: string) => void,
): { close(): void } {
  const dirs = new Set(files.map((f) => path.dirname(path.resolve(f))));
  const watchers: FSWatcher[] = [];
  let timer: NodeJS.Timeout | undefined;
  const changed = () => {
    clearTimeout(timer);
    timer = setTimeout(onChange, SETTLE_MS);
  };
  for (const dir of dirs) {
    try {
      const w = watch(dir, { persistent: false }, changed);
      w.on('error', (err) => onError(err, dir));
      watchers.push(w);
    } catch (err) {
      onError(err as Error, dir);
    }
  }
  return {
    close() {
      clearTimeout(timer);
      for (const w of watchers) w.close();
    },
  };
}
