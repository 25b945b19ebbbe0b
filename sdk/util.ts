/**
 * Small helpers every layer may use (they import nothing of the SDK).
 */
/** Bytes from what users pass: Buffer, Uint8Array or string (UTF-8). */
export function toBytes(value: unknown, what: string): Buffer | undefined {
  if (value === undefined || value === null) return undefined;
  if (Buffer.isBuffer(value)) return value;
  if (typeof value === 'string') return Buffer.from(value);
  if (value instanceof Uint8Array) return Buffer.from(value.buffer, value.byteOffset, value.byteLength);
  throw new TypeError(`${what} must be a Buffer, Uint8Array or string`);
}

/**
 * A one-shot wait with a timeout and an AbortSignal, cleaned up on every path (no timer or listener left behind).
 */
export function guard(
  timeoutMs: number,
  signal: AbortSignal | undefined,
  onTimeout: () => void,
  onAbort: (reason: unknown) => void,
): () => void {
  const timer = Number.isFinite(timeoutMs) && timeoutMs > 0 ? setTimeout(onTimeout, timeoutMs) : undefined;
  const abort = () => onAbort(signal?.reason);
  signal?.addEventListener('abort', abort, { once: true });
  return () => {
    clearTimeout(timer);
    signal?.removeEventListener('abort', abort);
  };
}

/**
 * The deadline to put on the wire: only for a timeout the caller chose, as Go does (a default timeout stays
 * local, which spares a time format and parse per message).
 */
export function wireDeadline(timeout: number | undefined): number | undefined {
  return timeout !== undefined && Number.isFinite(timeout) ? Date.now() + timeout : undefined;
}
