/**
 * Which site modules a launch activates (upstream 3.7): the user's --module list replaces
 * defaultModules, `none` clears it; an unknown module is an error, a disabled one too (a user
 * asking for it gets told, rather than a container without it); two selected modules that list
 * each other under `conflict` are an error. Order is the list order.
 */
import { ShifterError } from '../../common/errors.js';
import type { ShifterModuleConfig } from '../../common/config/udiroot-conf.js';
import type { ModuleChoice } from './options.js';

export function selectModules(
  choice: ModuleChoice,
  defaultModules: readonly string[],
  configured: ReadonlyMap<string, ShifterModuleConfig>,
): ShifterModuleConfig[] {
  const names = choice.kind === 'none' ? [] : choice.kind === 'list' ? choice.names : defaultModules;
  const unique = [...new Set(names)];
  const selected = unique.map((name) => {
    const m = configured.get(name);
    const known = [...configured.values()].filter((c) => c.enabled).map((c) => c.name);
    if (m === undefined) {
      throw new ShifterError(
        'BAD_ARGUMENT',
        `module '${name}' is not configured on this system (available: ${known.length > 0 ? known.join(', ') : 'none'})`,
      );
    }
    if (!m.enabled) throw new ShifterError('BAD_ARGUMENT', `module '${name}' is disabled on this system`);
    return m;
  });
  for (const a of selected) {
    for (const b of selected) {
      if (a !== b && a.conflict.includes(b.name)) {
        throw new ShifterError(
          'BAD_ARGUMENT',
          `modules '${a.name}' and '${b.name}' conflict: choose one with --module`,
        );
      }
    }
  }
  return selected;
}
