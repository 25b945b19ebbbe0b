/**
 * The smuggling and malformed-request corpus, on raw sockets against the outbound HTTP listener of a real pair.
 * Each request is followed on the same connection by `GET /smuggled`: every case gets the status nginx or Node
 * would give, with `connection: close` where the request is refused, and /smuggled never reaches the app.
 */

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { raw } from '../../helpers/raw-http.js';
import { type AbusePair, type PlainApp, startAbusePair, startPlainApp } from './helpers.js';

let app: PlainApp;
let pair: AbusePair;

beforeAll(async () => {
  app = await startPlainApp();
  pair = await startAbusePair(app);
});
afterAll(async () => {
  pair?.close();
  await app?.close();
});

/** What a desync would make a second request of: it is inside a body, or right after a refused request. */
const SMUGGLED = 'GET /smuggled HTTP/1.1\r\nhost: app\r\n\r\n';
/** The next request on the connection: served only after a well-formed request. */
const NEXT = 'GET /next HTTP/1.1\r\nhost: app\r\nconnection: close\r\n\r\n';

/** [name, the raw request (the smuggled one is appended), the status, whether the connection must close]. */
const CORPUS: Array<[string, string, number, boolean]> = [
  [
    'CL.TE: content-length and transfer-encoding both',
    'POST /a HTTP/1.1\r\nhost: app\r\ncontent-length: 4\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n',
    400,
    true,
  ],
  [
    'two different content-lengths',
    'POST /a HTTP/1.1\r\nhost: app\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\nhello',
    400,
    true,
  ],
  ['a negative content-length', 'POST /a HTTP/1.1\r\nhost: app\r\ncontent-length: -1\r\n\r\n', 400, true],
  [
    'a content-length that is not a number',
    'POST /a HTTP/1.1\r\nhost: app\r\ncontent-length: 1e3\r\n\r\n',
    400,
    true,
  ],
  [
    'transfer-encoding: gzip (an unknown coding for a request)',
    'POST /a HTTP/1.1\r\nhost: app\r\ntransfer-encoding: gzip\r\n\r\n',
    501,
    true,
  ],
  [
    'transfer-encoding: chunked, gzip (chunked not last)',
    'POST /a HTTP/1.1\r\nhost: app\r\ntransfer-encoding: chunked, gzip\r\n\r\n',
    501,
    true,
  ],
  [
    'transfer-encoding: gzip, chunked (a coding the sidecar does not do)',
    'POST /a HTTP/1.1\r\nhost: app\r\ntransfer-encoding: gzip, chunked\r\n\r\n0\r\n\r\n',
    501,
    true,
  ],
  [
    'a space before the colon of transfer-encoding',
    'POST /a HTTP/1.1\r\nhost: app\r\ntransfer-encoding : chunked\r\ncontent-length: 4\r\n\r\n0\r\n\r\n',
    400,
    true,
  ],
  [
    'a chunk size that is not hex',
    'POST /a HTTP/1.1\r\nhost: app\r\ntransfer-encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n',
    400,
    true,
  ],
  ['a header line without a colon', 'GET /a HTTP/1.1\r\nhost: app\r\nno colon here\r\n\r\n', 400, true],
  ['a NUL in a header value', 'GET /a HTTP/1.1\r\nhost: app\r\nx-a: b\u0000c\r\n\r\n', 400, true],
  ['an unknown HTTP version', 'GET /a HTTP/9.9\r\nhost: app\r\n\r\n', 400, true],
  ['a method that is not a token', 'G(T /a HTTP/1.1\r\nhost: app\r\n\r\n', 400, true],
  ['an obs-fold continuation line', 'GET /a HTTP/1.1\r\nhost: app\r\nx-a: b\r\n c\r\n\r\n', 400, true],
  [
    'a header of 40 KiB',
    `GET /a HTTP/1.1\r\nhost: app\r\nx-big: ${'a'.repeat(40 * 1024)}\r\n\r\n`,
    431,
    true,
  ],
  // Well-formed ones: a body is a body, never a second request.
  [
    'CL.0: a GET whose body looks like a request',
    `GET /a HTTP/1.1\r\nhost: app\r\ncontent-length: ${SMUGGLED.length}\r\n\r\n${SMUGGLED}`,
    200,
    false,
  ],
  [
    'a chunked body that looks like a request',
    `POST /a HTTP/1.1\r\nhost: app\r\ntransfer-encoding: chunked\r\n\r\n${SMUGGLED.length.toString(16)}\r\n${SMUGGLED}\r\n0\r\n\r\n`,
    200,
    false,
  ],
];

const CASES = CORPUS.map(([name, request, status, closes]) => ({ name, request, status, closes }));

describe(`smuggling and malformed-request corpus (${CORPUS.length} cases)`, () => {
  it.each(CASES)('$name: $status', async ({ request, status, closes }) => {
    const before = app.seen.length;
    const r = await raw(pair.webPort, request + (closes ? SMUGGLED + NEXT : NEXT), { waitMs: 5_000 });
    expect(r.statuses[0]).toBe(status);
    expect(r.closed).toBe(true);
    // Give a smuggled request every chance to arrive before looking.
    await new Promise((res) => setTimeout(res, 50));
    const paths = app.seen.slice(before).map((s) => s.path);
    expect(paths).not.toContain('/smuggled');
    if (closes) {
      expect(r.statuses).toHaveLength(1);
      expect(r.text.toLowerCase()).toContain('connection: close');
      expect(paths).toEqual([]);
    } else {
      // The well-formed request (its body whole, never a request), then the next one (on another stream, so the
      // app may see them in either order).
      expect(r.statuses).toEqual([200, 200]);
      expect(paths.sort()).toEqual(['/a', '/next']);
    }
  });
});
