/**
 * geminio for Node.js: one TCP or TLS connection carrying bidirectional RPC, acknowledged messages and many
 * multiplexed streams, wire-compatible with the Go library github.com/singchia/geminio.
 */
export { type Address, type HostPort, parseAddress } from './address.js';
export { type Delivery, Message, type PublishOptions } from './channel/messaging.js';
export type { CallOptions, CallResult, RpcHandler, RpcRequest } from './channel/rpc.js';
export { Stream } from './channel/stream.js';
export { clientEnd, type DialOptions, dial } from './client.js';
export { defaultLimits, type EndLimits } from './config.js';
export * as diagnostics from './diagnostics.js';
export {
  CHANNELS,
  type ConnectionCloseMessage,
  type ConnectionOpenMessage,
  type EndReconnectingMessage,
  type EndReconnectMessage,
  type HandshakeErrorMessage,
  type HandshakeFailure,
  type StreamBytesMessage,
  type StreamCloseMessage,
  type StreamOpenMessage,
} from './diagnostics.js';
export {
  type AcceptHalfOpen,
  type AcceptStreamOptions,
  End,
  type EndState,
  type OpenStreamOptions,
  type SetupOptions,
} from './end.js';
export * from './errors.js';
export {
  defaultReconnectPolicy,
  nextDelay as backoffDelay,
  type ReconnectOption,
  type ReconnectPolicy,
  resolveReconnect as resolveReconnectPolicy,
} from './reconnect.js';
export {
  type ConnectHook,
  type ConnectInfo,
  Listener,
  type ListenOptions,
  listen,
  type ServerEndOptions,
  serverEnd,
} from './server.js';
