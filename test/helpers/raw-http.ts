/**
 * Raw HTTP/1.1 clients for tests that must control every byte or see exactly what comes back: pipelined requests on
 * one stream or socket (`exchange`), byte-exact writes on a raw TCP connection (`raw`), and request heads.
 */
import { connect } from 'node:net';
import type { Duplex } from 'node:stream';

export interface RawResponse {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/**
 * Writes raw HTTP/1.1 requests on a stream or socket (all at once: pipelined) and reads that many responses (bodies framed
 * by content-length). Resolves with fewer when the stream closes first.
 */
export async function exchange(stream: Duplex, requests: string[]): Promise<RawResponse[]> {
  let buf = Buffer.alloc(0);
  const out: RawResponse[] = [];
  return new Promise((resolve) => {
    const done = () => {
      stream.off('data', onData);
      resolve(out);
    };
    const onData = (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      for (;;) {
        const headEnd = buf.indexOf('\r\n\r\n');
        if (headEnd < 0) return;
        const lines = buf.subarray(0, headEnd).toString('latin1').split('\r\n');
        const headers: Record<string, string> = {};
        for (const l of lines.slice(1)) {
          const i = l.indexOf(':');
          headers[l.slice(0, i).toLowerCase()] = l.slice(i + 1).trim();
        }
        const body = readBody(buf.subarray(headEnd + 4), headers);
        if (!body) return;
        out.push({ status: Number(lines[0]!.split(' ')[1]), headers, body: body.text });
        buf = buf.subarray(headEnd + 4 + body.used);
        if (out.length === requests.length) return done();
      }
    };
    stream.on('data', onData);
    stream.once('close', done);
    stream.once('end', done);
    stream.on('error', () => {});
    stream.write(requests.join(''));
  });
}

/** A body framed by content-length or chunked; undefined until complete. */
function readBody(b: Buffer, headers: Record<string, string>): { text: string; used: number } | undefined {
  if (headers['transfer-encoding'] !== 'chunked') {
    const len = Number(headers['content-length'] ?? 0);
    return b.length < len ? undefined : { text: b.subarray(0, len).toString(), used: len };
  }
  let at = 0;
  let text = '';
  for (;;) {
    const eol = b.indexOf('\r\n', at);
    if (eol < 0) return undefined;
    const size = Number.parseInt(b.subarray(at, eol).toString(), 16);
    if (b.length < eol + 2 + size + 2) return undefined;
    text += b.subarray(eol + 2, eol + 2 + size).toString();
    at = eol + 2 + size + 2;
    if (size === 0) return { text, used: at };
  }
}

/** A whole raw GET (or another method) request without a body (content-length: 0). */
export function get(pathname: string, method = 'GET', extra = ''): string {
  return `${method} ${pathname} HTTP/1.1\r\nhost: app\r\ncontent-length: 0\r\n${extra}\r\n`;
}

export interface RawResult {
  /** Everything the server sent. */
  text: string;
  /** The status of each response head found in `text`, in order. */
  statuses: number[];
  /** True when the server ended or closed the connection (within the wait). */
  closed: boolean;
  /** Milliseconds from the first write until the close (or the end of the wait). */
  ms: number;
}

/**
 * Sends `chunks` on a raw TCP connection (a string is sent at once; an array with `gapMs` between chunks) and
 * collects what comes back until the server closes, or `waitMs` passes.
 */
export function raw(
  port: number,
  chunks: string | Buffer | Array<string | Buffer>,
  o: { waitMs?: number; gapMs?: number } = {},
): Promise<RawResult> {
  const list = Array.isArray(chunks) ? chunks : [chunks];
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    const started = Date.now();
    let text = '';
    let timer: NodeJS.Timeout | undefined;
    let closed = false;
    const finish = () => {
      clearTimeout(timer);
      clearTimeout(sender);
      s.destroy();
      const statuses = [...text.matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((m) => Number(m[1]));
      resolve({ text, statuses, closed, ms: Date.now() - started });
    };
    s.on('data', (d: Buffer) => {
      text += d.toString('latin1');
    });
    s.on('error', () => {});
    s.once('end', () => {
      closed = true;
      finish();
    });
    s.once('close', () => {
      closed = true;
      finish();
    });
    let i = 0;
    let sender: NodeJS.Timeout | undefined;
    const next = () => {
      if (s.destroyed || i >= list.length) return;
      s.write(list[i++]!);
      if (i < list.length) sender = setTimeout(next, o.gapMs ?? 0);
    };
    next();
    timer = setTimeout(finish, o.waitMs ?? 5_000);
  });
}

/** A request head with `extra` header lines (each ending in \r\n), for the test to follow with a body or not. */
export function head(path: string, extra = '', method = 'GET'): string {
  return `${method} ${path} HTTP/1.1\r\nhost: app\r\n${extra}\r\n`;
}
