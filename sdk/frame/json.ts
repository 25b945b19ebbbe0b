/**
 * The JSON parts of geminio frames, written byte for byte as Go's encoding/json writes them (keys in struct order,
 * compact, HTML-escaped strings, padded standard base64 for bytes, the zero time for unset deadlines) and read
 * tolerantly (case-insensitive keys, null, missing keys, any RFC 3339 time) but strictly typed: anything Go would
 * refuse is a ProtocolError.
 */
import { ProtocolError } from '../errors.js';
import { GO_ZERO_TIME } from './constants.js';
import type { ConnData, MessageData, RegisterData, SessionData } from './packet.js';

const EMPTY_OBJECT = Buffer.from('{}');
const ZERO_TAIL = `"deadline":"${GO_ZERO_TIME}","context":{"deadline":"${GO_ZERO_TIME}"}}`;
const HTML_UNSAFE = /[<>&\u2028\u2029]/g;
const BASE64_STD = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
/** The zero time.Time and anything at or before it means "unset". */
const GO_ZERO_MS = -62135596800000; // 0001-01-01T00:00:00Z

/** A string as Go's json.Marshal writes it: JSON.stringify plus Go's HTML-safe escapes. */
export function goString(s: string): string {
  const json = JSON.stringify(s);
  return HTML_UNSAFE.test(json)
    ? json.replace(HTML_UNSAFE, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`)
    : json;
}

/** A time as Go's json.Marshal writes a time.Time (RFC 3339, trailing fraction zeros trimmed, UTC as Z). */
export function goTime(ms: number | undefined): string {
  if (ms === undefined) return GO_ZERO_TIME;
  const iso = new Date(ms).toISOString(); // YYYY-MM-DDTHH:MM:SS.mmmZ
  const fraction = iso.slice(20, 23).replace(/0+$/, '');
  return `${iso.slice(0, 19)}${fraction ? `.${fraction}` : ''}Z`;
}

function bytesField(out: string[], key: string, value: Buffer | undefined): void {
  if (value !== undefined && value.length > 0) out.push(`"${key}":"${value.toString('base64')}"`);
}

function stringField(out: string[], key: string, value: string | undefined): void {
  if (value !== undefined && value !== '') out.push(`"${key}":${goString(value)}`);
}

function finish(out: string[]): Buffer {
  return out.length === 0 ? EMPTY_OBJECT : Buffer.from(`{${out.join(',')}}`);
}

export function encodeConnData(d: ConnData): Buffer {
  const out: string[] = [];
  bytesField(out, 'meta', d.meta);
  stringField(out, 'error', d.error);
  if (d.ext) {
    const ext: string[] = [];
    if (d.ext.caps !== undefined) ext.push(`"caps":${d.ext.caps & 0xff}`);
    if (d.ext.resume?.length) ext.push(`"resume":"${d.ext.resume.toString('base64')}"`);
    out.push(`"ext":{${ext.join(',')}}`);
  }
  return finish(out);
}

export function encodeSessionData(d: SessionData): Buffer {
  const out: string[] = [];
  bytesField(out, 'meta', d.meta);
  stringField(out, 'error', d.error);
  stringField(out, 'peer', d.peer);
  return finish(out);
}

export function encodeRegisterData(d: RegisterData): Buffer {
  const out: string[] = [];
  stringField(out, 'error', d.error);
  return finish(out);
}

/** MessageData always carries `deadline` and `context` (Go never omits a time.Time); the common tail is constant. */
export function encodeMessageData(d: MessageData): Buffer {
  return encodeMessageDataAt(d, 0);
}

/** Length of the padded standard base64 of n bytes. */
const base64Length = (n: number): number => Math.ceil(n / 3) * 4;

/**
 * MessageData's JSON written straight into one Buffer after `head` bytes left for the caller (the frame header
 * and stream ID): the same bytes as building the JSON text and copying it, without the intermediate strings,
 * joins and Buffers (a 4 KiB value is 5.5 KB of base64: building it as text cost a string, a flattened copy and
 * a Buffer per message).
 */
export function encodeMessageDataAt(d: MessageData, head: number): Buffer {
  const key = d.key !== undefined && d.key.length > 0 ? d.key : undefined;
  const value = d.value !== undefined && d.value.length > 0 ? d.value : undefined;
  const custom = d.custom !== undefined && d.custom.length > 0 ? d.custom : undefined;
  const topic = d.topic !== undefined && d.topic !== '' ? goString(d.topic) : undefined;
  const error = d.error !== undefined && d.error !== '' ? goString(d.error) : undefined;
  const timeout = d.timeout !== undefined && d.timeout !== 0 ? String(Math.trunc(d.timeout)) : undefined;
  const tail =
    d.deadline === undefined && d.contextDeadline === undefined
      ? ZERO_TAIL
      : `"deadline":"${goTime(d.deadline)}","context":{"deadline":"${goTime(d.contextDeadline)}"}}`;
  // '{' + each field with its trailing comma + the tail (ASCII); the string fields' JSON may hold any UTF-8.
  let length = 1 + tail.length;
  if (key) length += 9 + base64Length(key.length); // "key":"…",
  if (value) length += 11 + base64Length(value.length); // "value":"…",
  if (topic) length += 9 + Buffer.byteLength(topic); // "topic":…,
  if (custom) length += 12 + base64Length(custom.length); // "custom":"…",
  if (error) length += 9 + Buffer.byteLength(error); // "error":…,
  if (timeout) length += 11 + timeout.length; // "timeout":…,
  const buf = Buffer.allocUnsafe(head + length);
  let o = head;
  buf[o++] = 0x7b; // {
  if (key) o = bytesInto(buf, o, '"key":"', key);
  if (value) o = bytesInto(buf, o, '"value":"', value);
  if (topic) o = textInto(buf, o, '"topic":', topic);
  if (custom) o = bytesInto(buf, o, '"custom":"', custom);
  if (error) o = textInto(buf, o, '"error":', error);
  if (timeout) o += buf.write(`"timeout":${timeout},`, o, 'latin1');
  buf.write(tail, o, 'latin1');
  return buf;
}

function bytesInto(buf: Buffer, o: number, name: string, bytes: Buffer): number {
  o += buf.write(name, o, 'latin1');
  o += buf.write(bytes.toString('base64'), o, 'latin1');
  buf[o++] = 0x22; // "
  buf[o++] = 0x2c; // ,
  return o;
}

function textInto(buf: Buffer, o: number, name: string, json: string): number {
  o += buf.write(name, o, 'latin1');
  o += buf.write(json, o, 'utf8');
  buf[o++] = 0x2c; // ,
  return o;
}

// ---- decoding ----

type JsonObject = Record<string, unknown>;

/** Parses a JSON part into a map with lower-cased keys (Go matches struct fields case-insensitively). */
function parseObject(input: Buffer | string, what: string): JsonObject {
  let value: unknown;
  try {
    value = JSON.parse(typeof input === 'string' ? input : input.toString('utf8'));
  } catch (err) {
    throw new ProtocolError(`invalid JSON in ${what}`, { cause: err });
  }
  if (value === null) return {};
  if (typeof value !== 'object' || Array.isArray(value)) {
    throw new ProtocolError(`JSON in ${what} is not an object`);
  }
  const o = value as JsonObject;
  // Go (and we) write lower-case keys: then the parsed object is used as is. Reading only our own key names
  // from it is safe even with a "__proto__" key, which JSON.parse makes an own property, not the prototype.
  for (const k in o) if (k !== k.toLowerCase()) return foldKeys(o);
  return o;
}

/**
 * Lower-cases keys as Go matches them, the last duplicate winning as in Go. A prototype-less object, so a key
 * such as "__proto__" is data like any other (and ignored, as Go ignores unknown keys).
 */
function foldKeys(o: JsonObject): JsonObject {
  const out: JsonObject = Object.create(null);
  for (const [k, v] of Object.entries(o)) out[k.toLowerCase()] = v;
  return out;
}

function readBytes(o: JsonObject, key: string, what: string): Buffer | undefined {
  const v = o[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string') throw new ProtocolError(`${what}.${key} must be a base64 string`);
  const bytes = paddedBase64(v);
  if (!bytes) throw new ProtocolError(`${what}.${key} is not padded standard base64`);
  return bytes;
}

/**
 * The bytes of padded standard base64, as Go's StdEncoding wants it, or undefined for anything else; checked
 * without a regex or a second pass: Node's decoder skips invalid characters and stops at '=', so any of those makes
 * the output shorter than the length implies; it also takes the URL-safe alphabet, which Go refuses.
 */
function paddedBase64(v: string): Buffer | undefined {
  const bytes = Buffer.from(v, 'base64');
  const padding = v.endsWith('==') ? 2 : v.endsWith('=') ? 1 : 0;
  if (v.length % 4 !== 0 || bytes.length !== (v.length / 4) * 3 - padding) return undefined;
  return v.includes('-') || v.includes('_') ? undefined : bytes;
}

function readString(o: JsonObject, key: string, what: string): string | undefined {
  const v = o[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string') throw new ProtocolError(`${what}.${key} must be a string`);
  return v === '' ? undefined : v;
}

const RFC3339 = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.\d+)?(?:Z|[+-](\d{2}):(\d{2}))$/;

function daysInMonth(year: number, month: number): number {
  return new Date(Date.UTC(year, month, 0)).getUTCDate() || 31;
}

function readTime(v: unknown, what: string): number | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string') throw new ProtocolError(`${what} must be an RFC 3339 string`);
  if (v === GO_ZERO_TIME) return undefined; // what Go writes for "unset": every message carries two
  const m = RFC3339.exec(v);
  if (!m) throw new ProtocolError(`${what} is not an RFC 3339 time`);
  // Go range-checks every field; Date.parse would roll Feb 30 over to March.
  const [year, month, day, hour, minute, second] = m.slice(1, 7).map(Number) as [
    number,
    number,
    number,
    number,
    number,
    number,
  ];
  const offH = m[7] === undefined ? 0 : Number(m[7]);
  const offM = m[8] === undefined ? 0 : Number(m[8]);
  if (
    month < 1 ||
    month > 12 ||
    day < 1 ||
    day > daysInMonth(year, month) ||
    hour > 23 ||
    minute > 59 ||
    second > 59 ||
    offH > 23 ||
    offM > 59
  ) {
    throw new ProtocolError(`${what} is out of range: ${v}`);
  }
  // Date.parse accepts at most millisecond precision reliably: cut longer fractions.
  const ms = Date.parse(v.replace(/(\.\d{3})\d+/, '$1'));
  if (Number.isNaN(ms)) throw new ProtocolError(`${what} is not a valid time`);
  return ms <= GO_ZERO_MS ? undefined : ms;
}

export function decodeConnData(buf: Buffer): ConnData {
  const o = parseObject(buf, 'ConnData');
  const data: ConnData = {
    meta: readBytes(o, 'meta', 'ConnData'),
    error: readString(o, 'error', 'ConnData'),
  };
  // The extension answer; anything malformed there just means "no extension" (Go would ignore the key too).
  const ext = o.ext as { caps?: unknown; resume?: unknown } | null | undefined;
  if (ext && typeof ext === 'object') {
    const caps = Number.isInteger(ext.caps) ? (ext.caps as number) & 0xff : undefined;
    const resume =
      typeof ext.resume === 'string' && BASE64_STD.test(ext.resume)
        ? Buffer.from(ext.resume, 'base64')
        : undefined;
    if (caps !== undefined || resume) data.ext = { caps, resume };
  }
  return data;
}

export function decodeSessionData(buf: Buffer): SessionData {
  const o = parseObject(buf, 'SessionData');
  return {
    meta: readBytes(o, 'meta', 'SessionData'),
    error: readString(o, 'error', 'SessionData'),
    peer: readString(o, 'peer', 'SessionData'),
  };
}

export function decodeRegisterData(buf: Buffer): RegisterData {
  const o = parseObject(buf, 'RegisterData');
  return { error: readString(o, 'error', 'RegisterData') };
}

const INTEGER_TIMEOUT = /"timeout"\s*:\s*-?\d+\s*[,}]/i;

/**
 * MessageData from its JSON. What Go and we write (compact, lower-case keys, no escapes) is read by a scanner over
 * the bytes, without turning the body into a string and parsing it into an object first; anything else (escapes,
 * other key cases, unknown keys, odd values, and every malformed body) goes to the general path below, which
 * decides what is accepted and with which error.
 */
export function decodeMessageData(buf: Buffer): MessageData {
  return scanMessageData(buf) ?? decodeMessageDataGeneral(buf);
}

const ZERO_TIME_BYTES = Buffer.from(GO_ZERO_TIME, 'latin1');
const K = {
  Key: 0,
  Value: 1,
  Topic: 2,
  Custom: 3,
  Error: 4,
  Timeout: 5,
  Deadline: 6,
  Context: 7,
  Other: 8,
} as const;
type K = (typeof K)[keyof typeof K];
const KEY_BYTES: ReadonlyArray<readonly [K, Buffer]> = (
  [
    [K.Key, 'key'],
    [K.Value, 'value'],
    [K.Topic, 'topic'],
    [K.Custom, 'custom'],
    [K.Error, 'error'],
    [K.Timeout, 'timeout'],
    [K.Deadline, 'deadline'],
    [K.Context, 'context'],
  ] as const
).map(([k, name]) => [k, Buffer.from(name, 'latin1')] as const);

function isWs(c: number | undefined): boolean {
  return c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;
}

function skipWs(b: Buffer, i: number): number {
  while (isWs(b[i])) i++;
  return i;
}

function sameBytes(b: Buffer, start: number, end: number, want: Buffer): boolean {
  if (end - start !== want.length) return false;
  for (let j = 0; j < want.length; j++) if (b[start + j] !== want[j]) return false;
  return true;
}

function keyOf(b: Buffer, start: number, end: number): K {
  for (const [k, name] of KEY_BYTES) if (sameBytes(b, start, end, name)) return k;
  return K.Other;
}

/** The fast path's refusal: the general path decides (and reports the error, if any). */
class NotPlain {}
const NOT_PLAIN = new NotPlain();

/** `null`: returns the index after it, or -1 when the value there is not null. */
function nullAt(b: Buffer, i: number): number {
  return b[i] === 0x6e && b[i + 1] === 0x75 && b[i + 2] === 0x6c && b[i + 3] === 0x6c ? i + 4 : -1;
}

/** The end (closing quote) of the escape-free string opening at i. */
function stringEnd(b: Buffer, i: number): number {
  if (b[i] !== 0x22) throw NOT_PLAIN;
  const e = b.indexOf(0x22, i + 1);
  if (e < 0) throw NOT_PLAIN;
  return e;
}

function bytesAt(b: Buffer, start: number, end: number): Buffer | undefined {
  // The same rule as readBytes: padded standard base64 only.
  const bytes = paddedBase64(b.toString('latin1', start, end));
  if (!bytes) throw NOT_PLAIN;
  return bytes;
}

function textAt(b: Buffer, start: number, end: number): string | undefined {
  for (let j = start; j < end; j++) if (b[j]! < 0x20) throw NOT_PLAIN; // JSON forbids raw control characters
  return start === end ? undefined : b.toString('utf8', start, end);
}

function timeAt(b: Buffer, start: number, end: number, what: string): number | undefined {
  if (sameBytes(b, start, end, ZERO_TIME_BYTES)) return undefined;
  for (let j = start; j < end; j++) if (b[j]! >= 0x80) throw NOT_PLAIN;
  return readTime(b.toString('latin1', start, end), what);
}

/**
 * The fast path of decodeMessageData: compact or spaced JSON with lower-case MessageData keys only, strings
 * without escapes, `null` anywhere Go allows it, an integer timeout, a context with at most its deadline.
 * Returns undefined for anything else, and for anything invalid: the general path then reads it (or refuses it).
 */
/** @internal Exported for the codec tests. */
export function scanMessageData(b: Buffer): MessageData | undefined {
  if (b.indexOf(0x5c) >= 0) return undefined; // a backslash: escapes are the general path's
  const d: MessageData = {
    key: undefined,
    value: undefined,
    topic: undefined,
    custom: undefined,
    error: undefined,
    timeout: undefined,
    deadline: undefined,
    contextDeadline: undefined,
  };
  try {
    let i = skipWs(b, 0);
    if (b[i] !== 0x7b) return undefined;
    i = skipWs(b, i + 1);
    if (b[i] === 0x7d) i++;
    else {
      for (;;) {
        const ke = stringEnd(b, i);
        const k = keyOf(b, i + 1, ke);
        if (k === K.Other) return undefined;
        i = skipWs(b, ke + 1);
        if (b[i] !== 0x3a) return undefined;
        i = skipWs(b, i + 1);
        const afterNull = nullAt(b, i);
        if (afterNull >= 0) {
          i = afterNull;
          if (k === K.Key) d.key = undefined;
          else if (k === K.Value) d.value = undefined;
          else if (k === K.Topic) d.topic = undefined;
          else if (k === K.Custom) d.custom = undefined;
          else if (k === K.Error) d.error = undefined;
          else if (k === K.Timeout) d.timeout = undefined;
          else if (k === K.Deadline) d.deadline = undefined;
          else d.contextDeadline = undefined;
        } else if (k === K.Timeout) {
          i = timeoutAt(b, i, d);
        } else if (k === K.Context) {
          i = contextAt(b, i, d);
        } else {
          const e = stringEnd(b, i);
          if (k === K.Key) d.key = bytesAt(b, i + 1, e);
          else if (k === K.Value) d.value = bytesAt(b, i + 1, e);
          else if (k === K.Custom) d.custom = bytesAt(b, i + 1, e);
          else if (k === K.Topic) d.topic = textAt(b, i + 1, e);
          else if (k === K.Error) d.error = textAt(b, i + 1, e);
          else d.deadline = timeAt(b, i + 1, e, 'MessageData.deadline');
          i = e + 1;
        }
        i = skipWs(b, i);
        if (b[i] === 0x2c) {
          i = skipWs(b, i + 1);
          continue;
        }
        if (b[i] !== 0x7d) return undefined;
        i++;
        break;
      }
    }
    return skipWs(b, i) === b.length ? d : undefined;
  } catch (err) {
    if (err === NOT_PLAIN || err instanceof ProtocolError) return undefined;
    throw err;
  }
}

/** An integer literal (what Go's int64 takes): -?(0|[1-9][0-9]*), at most 15 digits here. */
function timeoutAt(b: Buffer, i: number, d: MessageData): number {
  let j = i;
  const negative = b[j] === 0x2d;
  if (negative) j++;
  const first = j;
  let n = 0;
  while (j < b.length && b[j]! >= 0x30 && b[j]! <= 0x39) n = n * 10 + (b[j++]! - 0x30);
  const digits = j - first;
  if (digits === 0 || digits > 15 || (digits > 1 && b[first] === 0x30)) throw NOT_PLAIN;
  const c = b[j];
  if (c !== 0x2c && c !== 0x7d && !isWs(c)) throw NOT_PLAIN; // a fraction or an exponent
  d.timeout = n === 0 ? undefined : negative ? -n : n;
  return j;
}

/** `{}` or `{"deadline": time-or-null}`. */
function contextAt(b: Buffer, i: number, d: MessageData): number {
  if (b[i] !== 0x7b) throw NOT_PLAIN;
  i = skipWs(b, i + 1);
  d.contextDeadline = undefined;
  if (b[i] === 0x7d) return i + 1;
  const ke = stringEnd(b, i);
  if (keyOf(b, i + 1, ke) !== K.Deadline) throw NOT_PLAIN;
  i = skipWs(b, ke + 1);
  if (b[i] !== 0x3a) throw NOT_PLAIN;
  i = skipWs(b, i + 1);
  const afterNull = nullAt(b, i);
  if (afterNull >= 0) i = afterNull;
  else {
    const e = stringEnd(b, i);
    d.contextDeadline = timeAt(b, i + 1, e, 'MessageData.context.deadline');
    i = e + 1;
  }
  i = skipWs(b, i);
  if (b[i] !== 0x7d) throw NOT_PLAIN;
  return i + 1;
}

/** @internal The general MessageData decoder (JSON.parse): everything the fast path leaves to it. */
export function decodeMessageDataGeneral(buf: Buffer): MessageData {
  const text = buf.toString('utf8');
  const o = parseObject(text, 'MessageData');
  const timeout = o.timeout;
  // Go decodes int64 from integer literals only: 1.5e9, 100.0 and 1e3 are errors there, so here too.
  if (
    timeout !== undefined &&
    timeout !== null &&
    (!Number.isInteger(timeout) || !INTEGER_TIMEOUT.test(text))
  ) {
    throw new ProtocolError('MessageData.timeout must be an integer number of nanoseconds');
  }
  const context = o.context;
  if (context !== undefined && context !== null && (typeof context !== 'object' || Array.isArray(context))) {
    throw new ProtocolError('MessageData.context must be an object');
  }
  let contextDeadline: number | undefined;
  if (context) {
    const raw = context as JsonObject;
    const c = 'deadline' in raw ? raw : foldKeys(raw);
    contextDeadline = readTime(c.deadline, 'MessageData.context.deadline');
  }
  return {
    key: readBytes(o, 'key', 'MessageData'),
    value: readBytes(o, 'value', 'MessageData'),
    topic: readString(o, 'topic', 'MessageData'),
    custom: readBytes(o, 'custom', 'MessageData'),
    error: readString(o, 'error', 'MessageData'),
    timeout: typeof timeout === 'number' && timeout !== 0 ? timeout : undefined,
    deadline: readTime(o.deadline, 'MessageData.deadline'),
    contextDeadline,
  };
}
