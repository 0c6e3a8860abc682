/* Programs the helper runs as root: the site hooks and mkfs. */
#ifndef NSHELPER_PROGRAM_H
#define NSHELPER_PROGRAM_H

#include <stddef.h>

#define CLEAN_PATH "PATH=/usr/bin:/usr/sbin:/bin:/sbin"

/*
 * Runs argv[0] as root with a clean environment, stdin and stdout on /dev/null, cwd = cwdfd
 * (when >= 0) and none of the helper's fds, and waits for it. Returns 0 when it exited with
 * status 0; otherwise "exited with status 3" / "was killed by signal 9" plus its last stderr
 * line lands in why and -1 is returned.
 */
int run_program(const char *const argv[], int cwdfd, char *why, size_t whylen);

#endif
