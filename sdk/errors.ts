/**
 * Every error the SDK raises, one class per condition, each with a stable `code`.
 *
 * Classes are branded with a global symbol so that `instanceof` keeps working when two copies of the SDK are
 * loaded (for example one bundled into the sidecar and one from node_modules).
 */

const BRAND = Symbol.for('geminio.error.code');

/** Base class of every error thrown by geminio. `code` is stable across releases; match on it, not on text. */
export class GeminioError extends Error {
  readonly code: string;
  /** True when the same operation may succeed if retried (for example after a reconnect). */
  readonly retryable: boolean;

  constructor(code: string, message: string, options?: { cause?: unknown; retryable?: boolean }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.retryable = options?.retryable ?? false;
    this.name = new.target.name;
    (this as unknown as Record<symbol, string>)[BRAND] = code;
  }

  static override [Symbol.hasInstance](value: unknown): boolean {
    if (typeof value !== 'object' || value === null) return false;
    const code = (value as Record<symbol, unknown>)[BRAND];
    if (typeof code !== 'string') return false;
    // The base class matches every branded error; subclasses match their own code.
    // biome-ignore lint/complexity/noThisInStatic: `this` is the subclass being tested against, on purpose.
    const own = (this as unknown as { CODE?: string }).CODE;
    return own === undefined || own === code;
  }
}

function define<const C extends string>(code: C, defaultMessage: string, retryable = false) {
  return class extends GeminioError {
    static readonly CODE: C = code;
    constructor(message: string = defaultMessage, options?: { cause?: unknown }) {
      super(code, message, { ...options, retryable });
    }
  };
}

/** A frame broke the wire rules (unknown type, short body, bad JSON or base64, wrong state). The connection closes. */
export class ProtocolError extends define('GEMINIO_ERR_PROTOCOL', 'protocol error') {}
/** A frame declared a body longer than `maxPacketLength`. Checked from the header, before any allocation. */
export class FrameTooLargeError extends define('GEMINIO_ERR_FRAME_TOO_LARGE', 'frame too large') {}
/** The peer did not complete the Conn/ConnAck handshake in time. */
export class HandshakeTimeoutError extends define(
  'GEMINIO_ERR_HANDSHAKE_TIMEOUT',
  'handshake timed out',
  true,
) {}
/** The server answered Conn with an error ConnAck (its text is the message). */
export class HandshakeRejectedError extends define('GEMINIO_ERR_HANDSHAKE_REJECTED', 'handshake rejected') {}
/** Nothing arrived from the peer within the liveness timeout (HeartbeatAcks stopped, or client heartbeats stopped). */
export class HeartbeatTimeoutError extends define(
  'GEMINIO_ERR_HEARTBEAT_TIMEOUT',
  'peer is not responding',
  true,
) {}
/** The connection is closed or was lost; what was in flight on it did not complete. */
export class ConnectionClosedError extends define(
  'GEMINIO_ERR_CONNECTION_CLOSED',
  'connection closed',
  true,
) {}
/** A stream open was not acknowledged within `streamOpenTimeout`. */
export class StreamOpenTimeoutError extends define(
  'GEMINIO_ERR_STREAM_OPEN_TIMEOUT',
  'stream open timed out',
  true,
) {}
/** The peer refused to open a stream (error SessionAck). */
export class StreamRefusedError extends define('GEMINIO_ERR_STREAM_REFUSED', 'stream refused') {}
/** The stream was closed or aborted before the operation completed. */
export class StreamClosedError extends define('GEMINIO_ERR_STREAM_CLOSED', 'stream closed') {}
/** A configured limit (streams, backlog, buffered bytes, in-flight work) was reached. */
export class LimitExceededError extends define('GEMINIO_ERR_LIMIT', 'limit exceeded', true) {}
/** An option or argument was invalid. The message names it. */
export class InvalidArgumentError extends define('GEMINIO_ERR_INVALID_ARG', 'invalid argument') {}
/** The listener is closed. */
export class ListenerClosedError extends define('GEMINIO_ERR_LISTENER_CLOSED', 'listener closed') {}
/** An operation took longer than its timeout. */
export class TimeoutError extends define('GEMINIO_ERR_TIMEOUT', 'timed out', true) {}
/** An operation was aborted through its AbortSignal. */
export class AbortError extends define('GEMINIO_ERR_ABORTED', 'aborted') {}
/** The remote RPC handler failed; the message is the peer's error string. */
export class RemoteError extends define('GEMINIO_ERR_REMOTE', 'remote error') {}
/** The peer has no handler for the called method on that stream. */
export class NoSuchMethodError extends define('GEMINIO_ERR_NO_SUCH_METHOD', 'no such method') {}

/** The AbortError for an AbortSignal's reason (kept as the cause), so aborts are typed wherever they happen. */
export function abortError(reason: unknown): AbortError {
  if (reason instanceof AbortError) return reason;
  return new AbortError(reason instanceof Error ? reason.message : 'aborted', { cause: reason });
}

/** Every error class, keyed by code: used by the docs test to keep docs/ERRORS in step with the code. */
export const errorClasses = {
  GEMINIO_ERR_PROTOCOL: ProtocolError,
  GEMINIO_ERR_FRAME_TOO_LARGE: FrameTooLargeError,
  GEMINIO_ERR_HANDSHAKE_TIMEOUT: HandshakeTimeoutError,
  GEMINIO_ERR_HANDSHAKE_REJECTED: HandshakeRejectedError,
  GEMINIO_ERR_HEARTBEAT_TIMEOUT: HeartbeatTimeoutError,
  GEMINIO_ERR_CONNECTION_CLOSED: ConnectionClosedError,
  GEMINIO_ERR_STREAM_OPEN_TIMEOUT: StreamOpenTimeoutError,
  GEMINIO_ERR_STREAM_REFUSED: StreamRefusedError,
  GEMINIO_ERR_STREAM_CLOSED: StreamClosedError,
  GEMINIO_ERR_LIMIT: LimitExceededError,
  GEMINIO_ERR_INVALID_ARG: InvalidArgumentError,
  GEMINIO_ERR_LISTENER_CLOSED: ListenerClosedError,
  GEMINIO_ERR_TIMEOUT: TimeoutError,
  GEMINIO_ERR_ABORTED: AbortError,
  GEMINIO_ERR_REMOTE: RemoteError,
  GEMINIO_ERR_NO_SUCH_METHOD: NoSuchMethodError,
} as const;
