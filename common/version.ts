/**
 * The one version every program prints for `--version` (`shifter-ts 0.1.0`): package.json's, which
 * tsc copies into dist/ at build time, so an installed tree answers without its source checkout.
 * The C launcher gets the same string from scripts/build-native.mjs (-DSHIFTER_VERSION).
 */
import pkg from '../package.json' with { type: 'json' };

export const VERSION: string = pkg.version;

/** What `--version` prints, without the newline. */
export const VERSION_LINE = `${pkg.name} ${VERSION}`;
