/**
 * Public API of the chaos proxy, a fault-injecting TCP proxy for connection-resilience tests.
 */
export type {
  CorruptOptions,
  Direction,
  Faults,
  Flow,
  PerDirection,
} from './faults.js';
export { forDirection } from './faults.js';
export type {
  ChaosProxyEvents,
  ChaosProxyOptions,
  ChaosStats,
  ConnectionInfo,
  HostPort,
} from './proxy.js';
export { ChaosProxy } from './proxy.js';
