/**
 * MessageData's JSON (issue 14, round 4): the encoder writes the JSON straight into the frame's Buffer and the
 * decoder reads Go's compact form with a byte scanner, leaving everything else to the JSON.parse path.
 *  - byte-exact expectations for what Go's encoding/json writes (key order, omitempty, HTML escapes, base64);
 *  - the encoder against a reference built from JSON.stringify with Go's rules, for arbitrary data;
 *  - the scanner against the JSON.parse path, for arbitrary encodings and for mutations a Go peer (or a broken
 *    one) may send: whitespace, other key cases and orders, unknown keys, escapes, nulls, corrupted bytes.
 *    Both must give the same data, or both a ProtocolError.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ProtocolError } from '../../../sdk/errors.js';
import {
  decodeMessageData,
  decodeMessageDataGeneral,
  encodeMessageData,
  goString,
  goTime,
  scanMessageData,
} from '../../../sdk/frame/json.js';
import type { MessageData } from '../../../sdk/frame/packet.js';

const ZERO = '0001-01-01T00:00:00Z';
const ZERO_TAIL = `"deadline":"${ZERO}","context":{"deadline":"${ZERO}"}}`;
const b = (s: string) => Buffer.from(s);
const text = (d: MessageData) => encodeMessageData(d).toString('utf8');

/** Go's json.Marshal of MessageData, built as text the slow, obvious way (the reference for the encoder). */
function reference(d: MessageData): string {
  const out: string[] = [];
  const bytes = (k: string, v: Buffer | undefined) => {
    if (v?.length) out.push(`"${k}":"${v.toString('base64')}"`);
  };
  const str = (k: string, v: string | undefined) => {
    if (v) {
      const json = JSON.stringify(v).replace(
        /[<>&\u2028\u2029]/g,
        (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
      );
      out.push(`"${k}":${json}`);
    }
  };
  bytes('key', d.key);
  bytes('value', d.value);
  str('topic', d.topic);
  bytes('custom', d.custom);
  str('error', d.error);
  if (d.timeout) out.push(`"timeout":${Math.trunc(d.timeout)}`);
  out.push(`"deadline":"${goTime(d.deadline)}"`);
  out.push(`"context":{"deadline":"${goTime(d.contextDeadline)}"}`);
  return `{${out.join(',')}}`;
}

/** Decodes with one path, as a comparable value: the data, or the error's class. */
function outcome(decode: (b: Buffer) => MessageData, body: Buffer): unknown {
  try {
    const d = decode(body);
    return Object.fromEntries(
      Object.entries(d).map(([k, v]) => [k, Buffer.isBuffer(v) ? `hex:${v.toString('hex')}` : v]),
    );
  } catch (err) {
    if (err instanceof ProtocolError) return 'ProtocolError';
    throw err;
  }
}

describe('MessageData encoding: byte-exact, as Go writes it', () => {
  it('an empty MessageData is the zero-time tail only', () => {
    expect(text({})).toBe(`{${ZERO_TAIL}`);
  });

  it('Request echo("hello"): key then value, base64, the zero times', () => {
    expect(text({ key: b('echo'), value: b('hello') })).toBe(
      `{"key":"ZWNobw==","value":"aGVsbG8=",${ZERO_TAIL}`,
    );
  });

  it('every field, in struct order, with a deadline', () => {
    const d: MessageData = {
      error: 'boom',
      custom: b('c'),
      topic: 't',
      value: b('v'),
      key: b('k'),
      timeout: 1_500_000_000,
      deadline: Date.UTC(2024, 4, 27, 8, 38, 39, 120),
      contextDeadline: Date.UTC(2024, 4, 27, 8, 38, 39, 0),
    };
    expect(text(d)).toBe(
      '{"key":"aw==","value":"dg==","topic":"t","custom":"Yw==","error":"boom","timeout":1500000000,' +
        '"deadline":"2024-05-27T08:38:39.12Z","context":{"deadline":"2024-05-27T08:38:39Z"}}',
    );
  });

  it('empty bytes and strings are omitted (omitempty), a zero timeout too', () => {
    expect(
      text({ key: b(''), value: Buffer.alloc(0), topic: '', error: '', custom: b(''), timeout: 0 }),
    ).toBe(`{${ZERO_TAIL}`);
  });

  it('strings HTML-escaped as Go does (<, >, &, U+2028, U+2029), other text as UTF-8', () => {
    expect(text({ topic: '<a href="x">&</a>', error: 'line\u2028sep\u2029é漢😀\n' })).toBe(
      '{"topic":"\\u003ca href=\\"x\\"\\u003e\\u0026\\u003c/a\\u003e",' +
        `"error":"line\\u2028sep\\u2029é漢😀\\n",${ZERO_TAIL}`,
    );
  });

  it('base64 is standard and padded for every length mod 3', () => {
    expect(text({ value: Buffer.from([0xfb]) })).toBe(`{"value":"+w==",${ZERO_TAIL}`);
    expect(text({ value: Buffer.from([0xfb, 0xff]) })).toBe(`{"value":"+/8=",${ZERO_TAIL}`);
    expect(text({ value: Buffer.from([0xfb, 0xff, 0xbf]) })).toBe(`{"value":"+/+/",${ZERO_TAIL}`);
  });

  it('a 4 KiB value: the same bytes as the reference, in one Buffer', () => {
    const d = { key: b('echo'), value: Buffer.alloc(4096, 7) };
    expect(text(d)).toBe(reference(d));
  });

  it('equals the JSON.stringify reference for arbitrary data', () => {
    const str = fc.option(
      fc.oneof(
        fc.string({ maxLength: 12 }),
        fc.string({ unit: 'binary', maxLength: 12 }),
        fc.string({
          unit: fc.constantFrom('<', '>', '&', '"', '\\', '\n', '\u0000', '\u2028', 'é', '😀', '\ud800'),
          maxLength: 8,
        }),
      ),
      { nil: undefined },
    );
    const bytes = fc.option(
      fc.uint8Array({ maxLength: 40 }).map((a) => Buffer.from(a)),
      { nil: undefined },
    );
    const time = fc.option(fc.integer({ min: -62135596799999, max: 253402300799999 }), { nil: undefined });
    fc.assert(
      fc.property(
        fc.record({
          key: bytes,
          value: bytes,
          topic: str,
          custom: bytes,
          error: str,
          timeout: fc.option(fc.maxSafeInteger(), { nil: undefined }),
          deadline: time,
          contextDeadline: time,
        }),
        (d) => {
          expect(text(d)).toBe(reference(d));
        },
      ),
      { numRuns: 3000 },
    );
  });

  it('goString is the reference escaping', () => {
    expect(goString('<&>')).toBe('"\\u003c\\u0026\\u003e"');
  });
});

describe('MessageData decoding: the byte scanner and the JSON.parse path agree', () => {
  it('the scanner reads what Go and we write (the fast path is taken)', () => {
    for (const d of [
      {},
      { key: b('echo'), value: Buffer.alloc(4096, 7) },
      { value: b('hello'), topic: 'news', custom: b('c') },
      { error: 'no such rpc: x' },
      { deadline: Date.UTC(2024, 4, 27, 8, 38, 39, 123), contextDeadline: Date.UTC(2030, 0, 1) },
    ] as MessageData[]) {
      const body = encodeMessageData(d);
      expect(scanMessageData(body)).toBeDefined();
      expect(outcome(decodeMessageData, body)).toEqual(outcome(decodeMessageDataGeneral, body));
    }
  });

  it('Go-valid forms the scanner handles itself: whitespace, nulls, key order, integer timeouts', () => {
    const cases = [
      ` { "value" : "aGk=" ,\n\t"key":"ZWNobw==" , "deadline" : "${ZERO}", "context" : { "deadline" : null } } `,
      '{"key":null,"value":null,"topic":null,"custom":null,"error":null,"timeout":null,"deadline":null,"context":null}',
      '{"timeout":-42,"context":{}}',
      '{"timeout":0}',
      '{"value":"aGk=","value":"aGVsbG8="}',
      '{"topic":"é漢","error":"e"}',
      '{"deadline":"2024-05-27T08:38:39.123456789+08:00"}',
      '{"key":""}',
      '{}',
    ];
    for (const json of cases) {
      const body = b(json);
      expect(scanMessageData(body), json).toBeDefined();
      expect(outcome(decodeMessageData, body), json).toEqual(outcome(decodeMessageDataGeneral, body));
    }
  });

  it('forms left to the JSON.parse path decode exactly as it decides', () => {
    const cases = [
      '{"Key":"ZWNobw==","VALUE":"aGk="}',
      '{"topic":"a\\u003cb\\n"}',
      '{"value":"aGk=","extra":[1,{"a":null}]}',
      '{"__proto__":{"value":"aGk="}}',
      '{"context":{"deadline":"0001-01-01T00:00:00Z","other":1}}',
      '{"timeout":1.5}',
      '{"timeout":1e3}',
      '{"timeout":01}',
      '{"timeout":12345678901234567}',
      '{"value":"aGk"}',
      '{"value":"a-b_"}',
      '{"value":"ab_w"}',
      '{"value":"YQ==YQ=="}',
      '{"value":5}',
      '{"topic":"a\u0001b"}',
      '{"deadline":"2024-02-30T00:00:00Z"}',
      '{"value":"aGk="} x',
      '{"value":"aGk=",}',
      'null',
      '',
      '[]',
      '{"value":"aGk="',
      '{"value" "aGk="}',
    ];
    for (const json of cases) {
      const body = b(json);
      expect(scanMessageData(body), json).toBeUndefined();
      expect(outcome(decodeMessageData, body), json).toEqual(outcome(decodeMessageDataGeneral, body));
    }
  });

  /** A few ways to disturb a valid encoding: each keeps or breaks its validity, the two paths must agree. */
  const mutate = (json: string, how: number, at: number, c: string): string => {
    const i = json.length === 0 ? 0 : at % (json.length + 1);
    switch (how) {
      case 0: // whitespace somewhere
        return json.slice(0, i) + ' \n\t\r'[at % 4] + json.slice(i);
      case 1: // a byte replaced
        return json.slice(0, i) + c + json.slice(i + 1);
      case 2: // a byte removed
        return json.slice(0, i) + json.slice(i + 1);
      case 3: // a character inserted
        return json.slice(0, i) + c + json.slice(i);
      case 4: // a key upper-cased
        return json.replace(/"(\w)(\w*)":/, (_m, f: string, r: string) => `"${f.toUpperCase()}${r}":`);
      case 5: // an unknown key in front
        return json.replace(/^\{/, `{"x${c}":${at % 2 ? 'null' : '[1]'},`);
      default: // an escaped character in a string
        return json.replace(/":"(\w)/, (_m, f: string) => `":"\\u00${f.charCodeAt(0).toString(16)}`);
    }
  };

  it('agree on arbitrary encodings and their mutations (fuzz)', () => {
    const bytes = fc.option(
      fc.uint8Array({ maxLength: 40 }).map((a) => Buffer.from(a)),
      { nil: undefined },
    );
    const str = fc.option(fc.string({ maxLength: 10 }), { nil: undefined });
    const time = fc.option(fc.integer({ min: -62135596799999, max: 253402300799999 }), { nil: undefined });
    const data = fc.record({
      key: bytes,
      value: bytes,
      topic: str,
      custom: bytes,
      error: str,
      timeout: fc.option(fc.integer({ min: -1e15, max: 1e15 }), { nil: undefined }),
      deadline: time,
      contextDeadline: time,
    });
    const chr = fc.constantFrom(
      '"',
      '\\',
      ',',
      ':',
      '{',
      '}',
      '[',
      'n',
      '0',
      '-',
      '_',
      '=',
      'A',
      '/',
      'é',
      '\u0001',
    );
    fc.assert(
      fc.property(data, fc.array(fc.tuple(fc.nat(6), fc.nat(), chr), { maxLength: 3 }), (d, mutations) => {
        let json = text(d);
        for (const [how, at, c] of mutations) json = mutate(json, how, at, c);
        const body = b(json);
        expect(outcome(decodeMessageData, body)).toEqual(outcome(decodeMessageDataGeneral, body));
      }),
      { numRuns: 20_000 },
    );
  });

  it('agree on arbitrary bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (a) => {
        const body = Buffer.from(a);
        expect(outcome(decodeMessageData, body)).toEqual(outcome(decodeMessageDataGeneral, body));
      }),
      { numRuns: 5_000 },
    );
  });
});
