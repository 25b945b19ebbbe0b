// prom-client's label hash (lib/util.js), which sidecar/observe/series.ts uses to find a series' entry.
declare module 'prom-client/lib/util.js' {
  export function hashObject(labels: Record<string, string | number>, labelNames?: string[]): string;
}
