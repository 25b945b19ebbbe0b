/** The README's SDK example is examples/readme.ts, verbatim, and it runs as written. */
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const run = promisify(execFile);
const root = new URL('../../', import.meta.url);

describe('README', () => {
  it('shows examples/readme.ts verbatim', () => {
    const readme = readFileSync(new URL('README.md', root), 'utf8');
    const block = /<!-- examples\/readme\.ts -->\n```ts\n([\s\S]*?)```/.exec(readme);
    expect(block, 'README has the marked example block').not.toBeNull();
    expect(block![1]).toBe(readFileSync(new URL('examples/readme.ts', root), 'utf8'));
  });

  it('its example runs and prints what the prose promises', async () => {
    const { stdout } = await run(process.execPath, ['--import', 'tsx', 'examples/readme.ts'], {
      cwd: root,
      timeout: 20_000,
    });
    expect(stdout).toMatch(/^hello world, you are client [1-9]\d*$/m);
    expect(stdout).toContain('server got message "ping" on topic demo');
    expect(stdout).toContain('stream "greetings": bytes from the server');
  });
});
