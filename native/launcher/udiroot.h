/*
 * The udiRoot.conf keys the launcher reads: shifterdSocket, and siteContact when shifterd cannot
 * be reached. Same line rules as
 * common/config/udiroot-conf.ts: `key=value`, key and value trimmed, `#` starts a comment
 * line, a value ending in `\` continues on the next line, the last occurrence of a key wins.
 */
#ifndef LAUNCHER_UDIROOT_H
#define LAUNCHER_UDIROOT_H

#include <stddef.h>

/* The file's path when $SHIFTER_UDIROOT_CONF is unset: defined by native/build.sh
 * ($SHIFTER_DEFAULT_UDIROOT_CONF at build time, default /etc/shifter/udiRoot.conf). */
#ifndef SHIFTER_DEFAULT_UDIROOT_CONF
#error "SHIFTER_DEFAULT_UDIROOT_CONF is not defined: build with native/build.sh"
#endif

/*
 * Copies the value of key in the file at path into out. Returns 1 when the key is set, 0 when the
 * file or the key is absent, -1 with errno when the file cannot be read (ENAMETOOLONG: the value
 * does not fit in out).
 */
int udiroot_value(const char *path, const char *key, char *out, size_t len);

/*
 * udiroot_value for shifterdSocket: copies its value of the file at path into out. Returns 1 when the key is set,
 * 0 when the file or the key is absent, -1 with errno when the file cannot be read (ENAMETOOLONG:
 * the value does not fit in out).
 */
int udiroot_shifterd_socket(const char *path, char *out, size_t len);

#endif
