/**
 * Parsing of the chaos CLI's flags and stdin commands, without spawning a process.
 */
import { describe, expect, it } from 'vitest';
import { parseCliArgs, parseCommand, UsageError } from '../../../chaos/args.js';

describe('parseCliArgs', () => {
  it('maps flags to faults for the chosen direction', () => {
    const cfg = parseCliArgs([
      '--listen',
      '127.0.0.1:9000',
      '--target',
      '8000',
      '--delay',
      '50',
      '--split',
      '1',
      '--corrupt-probability',
      '0.001',
      '--corrupt-seed',
      '7',
      '--blackhole',
      '--direction',
      'down',
    ]);
    expect(cfg).toEqual({
      listen: { host: '127.0.0.1', port: 9000 },
      target: { host: '127.0.0.1', port: 8000 },
      direction: 'down',
      faults: {
        delayMs: { down: 50 },
        splitMaxBytes: { down: 1 },
        corrupt: { down: { seed: 7, probability: 0.001 } },
        blackhole: { down: true },
      },
      corruptBase: { seed: 7 },
    });
    expect(parseCliArgs(['--help'])).toBeNull();
    expect(parseCliArgs(['--target', '[::1]:1', '--refuse'])).toMatchObject({
      target: { host: '::1', port: 1 },
      faults: { refuse: true },
    });
  });

  it.each([
    [['--delay', '5'], /--target is required/],
    [['--target', 'host'], /--target: "host"/],
    [['--target', '1', '--throttle', '0'], /--throttle: "0"/],
    [['--target', '1', '--split', '1.5'], /--split: "1.5"/],
    [['--target', '1', '--corrupt-probability', '2'], /--corrupt-probability: "2"/],
    [['--target', '1', '--listen', '1:99999'], /--listen: "1:99999"/],
    [['--target', '1', '--frobnicate'], /frobnicate/],
  ])('rejects %j', (argv, message) => {
    expect(() => parseCliArgs(argv)).toThrow(UsageError);
    expect(() => parseCliArgs(argv)).toThrow(message);
  });
});

describe('parseCommand', () => {
  const defaults = { direction: 'both' as const, corruptBase: { seed: 3 } };

  it('parses commands with an optional direction', () => {
    expect(parseCommand('  ', defaults)).toBeNull();
    expect(parseCommand('kill', defaults)).toEqual({ kind: 'kill' });
    expect(parseCommand('delay 25 up', defaults)).toMatchObject({
      kind: 'set',
      faults: { delayMs: { up: 25 } },
    });
    expect(parseCommand('blackhole on', defaults)).toMatchObject({ faults: { blackhole: true } });
    expect(parseCommand('refuse off', defaults)).toMatchObject({ faults: { refuse: false } });
    expect(parseCommand('corrupt 0.5', defaults)).toMatchObject({
      faults: { corrupt: { seed: 3, probability: 0.5 } },
    });
    expect(parseCommand('corrupt 0', defaults)).toMatchObject({ faults: { corrupt: null } });
  });

  it.each(['frob', 'delay', 'delay x', 'split -1', 'blackhole maybe', 'throttle 5 sideways', 'kill now'])(
    'rejects %j',
    (line) => {
      expect(() => parseCommand(line, defaults)).toThrow(UsageError);
    },
  );
});
