import { EventEmitter } from 'node:events';
import { describe, expect, it } from 'vitest';
import type { Stream } from '../../../sdk/index.js';
import { encodeFrame, FrameReader, type FrameSink, FrameType } from '../../../sidecar/proxy/h2.js';

/** What a sink saw, in order. */
function recorder(): { sink: FrameSink; events: unknown[] } {
  const events: unknown[] = [];
  const sink: FrameSink = {
    head: (v) => events.push(['head', v]),
    data: (c) => {
      // Consecutive DATA bytes are one event, however the chunks split them.
      const last = events[events.length - 1] as [string, string] | undefined;
      if (last?.[0] === 'data') last[1] += c.toString('latin1');
      else events.push(['data', c.toString('latin1')]);
      return true;
    },
    trailers: (t) => events.push(['trailers', t]),
    end: () => events.push(['end']),
    reset: (code) => events.push(['reset', code]),
    hello: () => events.push(['hello']),
  };
  return { sink, events };
}

function feed(bytes: Buffer, split: (b: Buffer) => Buffer[], persistent: boolean): unknown[] {
  const src = Object.assign(new EventEmitter(), { pause() {}, resume() {} });
  const { sink, events } = recorder();
  const errors: Error[] = [];
  new FrameReader(src as unknown as Stream, sink, 1024, (e) => errors.push(e), persistent);
  for (const c of split(bytes)) src.emit('data', c);
  if (errors.length > 0) events.push(['error', errors[0]!.message]);
  return events;
}

const oneByOne = (b: Buffer) => [...b].map((x) => Buffer.from([x]));
const whole = (b: Buffer) => [b];
const threes = (b: Buffer) => {
  const out: Buffer[] = [];
  for (let i = 0; i < b.length; i += 3) out.push(b.subarray(i, i + 3));
  return out;
};

describe('FrameReader', () => {
  // Two exchanges on one persistent stream: heads, DATA, END, TRAILERS and a HELLO.
  const bytes = Buffer.concat([
    encodeFrame(FrameType.Hello),
    encodeFrame(FrameType.Head, JSON.stringify({ status: 200, headers: { a: 'é' } })),
    encodeFrame(FrameType.Data, Buffer.from('hello ')),
    encodeFrame(FrameType.Data, Buffer.from('world')),
    encodeFrame(FrameType.End),
    encodeFrame(FrameType.Head, JSON.stringify({ status: 204, headers: {} })),
    encodeFrame(FrameType.Trailers, JSON.stringify({ 'grpc-status': '0' })),
  ]);
  const expected = [
    ['hello'],
    ['head', { status: 200, headers: { a: 'é' } }],
    ['data', 'hello world'],
    ['end'],
    ['head', { status: 204, headers: {} }],
    ['trailers', { 'grpc-status': '0' }],
  ];

  it('reads the same frames whole, in 3-byte chunks and byte by byte', () => {
    expect(feed(bytes, whole, true)).toEqual(expected);
    expect(feed(bytes, threes, true)).toEqual(expected);
    expect(feed(bytes, oneByOne, true)).toEqual(expected);
  });

  it('a one-exchange reader stops at END and sees a RESET after it', () => {
    const one = Buffer.concat([
      encodeFrame(FrameType.Head, JSON.stringify({ status: 200, headers: {} })),
      encodeFrame(FrameType.End),
      encodeFrame(FrameType.Reset, JSON.stringify({ code: 8 })),
    ]);
    for (const split of [whole, oneByOne]) {
      expect(feed(one, split, false)).toEqual([
        ['head', { status: 200, headers: {} }],
        ['end'],
        ['reset', 8],
      ]);
    }
  });

  it('a head over the limit and an unknown frame type are errors', () => {
    const big = encodeFrame(FrameType.Head, JSON.stringify({ pad: 'x'.repeat(2000) }));
    expect(feed(big, whole, true)).toEqual([['error', 'header frame of 2010 bytes']]);
    expect(feed(Buffer.from([99, 0, 0, 0, 0]), threes, true)).toEqual([['error', 'unknown frame type 99']]);
  });
});
