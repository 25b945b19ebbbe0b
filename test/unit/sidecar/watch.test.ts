/** The directory watch behind reload-on-change: the files named and a `..data` swap count, other files do not. */
import { mkdtempSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { watchDirectories } from '../../../sidecar/config/watch.js';
import { delay, eventually } from '../../helpers/wait.js';

const dirs: string[] = [];
const watchers: Array<{ close(): void }> = [];
afterEach(() => {
  for (const w of watchers.splice(0)) w.close();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function setup(): { dir: string; calls: () => number } {
  const dir = mkdtempSync(join(tmpdir(), 'geminio-watch-'));
  dirs.push(dir);
  writeFileSync(join(dir, 'sidecar.yaml'), 'a: 1\n');
  let calls = 0;
  watchers.push(
    watchDirectories(
      [join(dir, 'sidecar.yaml')],
      () => calls++,
      (err) => {
        throw err;
      },
    ),
  );
  return { dir, calls: () => calls };
}

describe('watchDirectories', () => {
  it('a write to another file in the directory (a log) is not a change; the config file is', async () => {
    const { dir, calls } = setup();
    for (let i = 0; i < 5; i++) writeFileSync(join(dir, 'sidecar.log'), `line ${i}\n`, { flag: 'a' });
    await delay(700); // longer than the settle time: a reload would have been called by now
    expect(calls()).toBe(0);
    writeFileSync(join(dir, 'sidecar.yaml'), 'a: 2\n');
    await eventually(() => calls() === 1, 5_000, 'the change');
  });

  it('a ..data symlink swap is a change (how Kubernetes updates a mounted ConfigMap)', async () => {
    const { dir, calls } = setup();
    symlinkSync('/', join(dir, '..data_tmp'));
    renameSync(join(dir, '..data_tmp'), join(dir, '..data'));
    await eventually(() => calls() >= 1, 5_000, 'the swap');
  });
});
