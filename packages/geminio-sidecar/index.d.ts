/** The absolute path of the single-file sidecar (the `geminio-sidecar` bin). */
export declare const sidecarBin: string;
/** The absolute path of the annotated example config (every key, with its default). */
export declare const exampleConfig: string;
/** This package's version, which is also the bundled sidecar's `--version`. */
export declare const version: string;
/** The plugins compiled into the sidecar, named in a config as `path: builtin:<name>`. */
export declare const builtinPlugins: readonly ['allow-list', 'token', 'mtls-identity', 'rate-limit'];
