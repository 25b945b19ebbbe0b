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
  const out: string[] = [];
  bytesField(out, 'key', d.key);
  bytesField(out, 'value', d.value);
  stringField(out, 'topic', d.topic);
  bytesField(out, 'custom', d.custom);
  stringField(out, 'error', d.error);
  if (d.timeout !== undefined && d.timeout !== 0) out.push(`"timeout":${Math.trunc(d.timeout)}`);
  const head = out.length === 0 ? '{' : `{${out.join(',')},`;
  if (d.deadline === undefined && d.contextDeadline === undefined) return Buffer.from(head + ZERO_TAIL);
  return Buffer.from(
    `${head}"deadline":"${goTime(d.deadline)}","context":{"deadline":"${goTime(d.contextDeadline)}"}}`,
  );
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
  // Padded standard base64, as Go's StdEncoding wants, checked without a regex or a second pass: Node's decoder
  // skips invalid characters and stops at '=', so any of those makes the output shorter than the length implies;
  // it also takes the URL-safe alphabet, which Go refuses.
  const bytes = Buffer.from(v, 'base64');
  const padding = v.endsWith('==') ? 2 : v.endsWith('=') ? 1 : 0;
  if (
    v.length % 4 !== 0 ||
    bytes.length !== (v.length / 4) * 3 - padding ||
    v.includes('-') ||
    v.includes('_')
  ) {
    throw new ProtocolError(`${what}.${key} is not padded standard base64`);
  }
  return bytes;
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

export function decodeMessageData(buf: Buffer): MessageData {
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
