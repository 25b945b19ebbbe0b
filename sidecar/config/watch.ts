/**
 * Watches the directories of the files a config names, so a reload follows a change without a signal. Kubernetes
 * updates a mounted ConfigMap or Secret by writing a new timestamped directory and swapping the `..data` symlink
 * with one rename, so the files themselves are never written in place: watching each file's directory (not the
 * file, whose inode a swap replaces) sees that rename of `..data`, an edit in place, and a file moved over
 * another alike.
 */
import { type FSWatcher, watch } from 'node:fs';
import path from 'node:path';

/** How long a burst of events (a swap is several renames) is gathered into one call. */
const SETTLE_MS = 200;

/**
 * Calls `onChange` once after each burst of changes to `files` (or to a `..data` link beside them) in their
 * directories; other files there (logs, editors' temp files) are ignored.
 */
export function watchDirectories(
  files: readonly string[],
  onChange: () => void,
  onError: (err: Error, dir: string) => void,
): { close(): void } {
  const names = new Map<string, Set<string>>();
  for (const f of files) {
    const full = path.resolve(f);
    const dir = path.dirname(full);
    if (!names.has(dir)) names.set(dir, new Set(['..data']));
    names.get(dir)!.add(path.basename(full));
  }
  const watchers: FSWatcher[] = [];
  let timer: NodeJS.Timeout | undefined;
  for (const [dir, wanted] of names) {
    try {
      const w = watch(dir, { persistent: false }, (_event, name) => {
        // Some platforms do not say which file changed: then any change counts.
        if (name !== null && !wanted.has(name.toString())) return;
        clearTimeout(timer);
        timer = setTimeout(onChange, SETTLE_MS);
      });
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
