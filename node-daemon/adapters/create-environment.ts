import { ShifterError } from '../../common/errors.js';
import { loadAddon } from '../../common/native-addon.js';
import type { Environment, EnvironmentSpec } from './environment-spec.js';
import { hookLogLines, runHelper } from './helper-process.js';
import { encodeSpec } from './spec-encoding.js';

/**
 * Builds one locked environment (node-runtime-notes.md, "locked" sequence) and returns the
 * fds of its user and mount namespaces, which keep it alive until close().
 */
export async function createEnvironment(spec: EnvironmentSpec): Promise<Environment> {
  if (spec.image.fd < 0) throw new ShifterError('INTERNAL', `image ${spec.image.path} was released`);
  const input = encodeSpec(spec);
  // A roothook extends the helper's own limit by its own.
  const hookSeconds = (spec.rootHooks ?? []).reduce((n, h) => n + h.timeoutSeconds, 0);
  const { text, fds, ms } = await runHelper('create-env', input, [spec.image.fd], 2, hookSeconds * 1000);
  const addon = loadAddon();
  let open = true;
  return {
    userNsFd: fds[0],
    mntNsFd: fds[1],
    setupMs: ms,
    helperMs: Number(/us=(\d+)/.exec(text)?.[1] ?? 0) / 1000,
    hookLog: hookLogLines(text),
    close() {
      if (!open) return;
      open = false;
      addon.closeFd(fds[0]);
      addon.closeFd(fds[1]);
    },
  };
}
