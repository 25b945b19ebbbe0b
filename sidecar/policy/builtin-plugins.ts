/**
 * The built-in plugins, imported statically so the single-file bundle carries them: a config names one as
 * `path: builtin:<name>`.
 */
import allowList from '../../plugins/allow-list/index.js';
import mtlsIdentity from '../../plugins/mtls-identity/index.js';
import rateLimit from '../../plugins/rate-limit/index.js';
import token from '../../plugins/token/index.js';

export const BUILTIN_PLUGINS: Readonly<Record<string, unknown>> = {
  'allow-list': allowList,
  token,
  'mtls-identity': mtlsIdentity,
  'rate-limit': rateLimit,
};
