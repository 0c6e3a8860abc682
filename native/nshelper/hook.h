/*
 * Module hooks (upstream's module_<name>_roothook and _userhook): `/bin/sh SCRIPT` with a time
 * limit, stdout and stderr captured so shifterd can log them and a failure can show the last
 * stderr lines.
 */
#ifndef NSHELPER_HOOK_H
#define NSHELPER_HOOK_H

#include "../common/fdio.h"

#define HOOK_TAIL 1024     /* bytes of each stream kept */
#define HOOK_LOG_MAX 6144  /* bytes of log lines one reply carries (the daemon reads 8 KiB) */
#define HOOK_TIMED_OUT 124 /* the exit code of a hook killed at its limit, as timeout(1) */

/* In the forked child, as root, before the exec: becomes what the hook runs as (never returns on failure). */
typedef void (*hook_enter_fn)(const void *arg);

struct hook_run {
	const char *name;   /* e.g. "module mpich roothook" */
	const char *script; /* absolute; a host path for roothooks, a container path for userhooks */
	int cwdfd;          /* -1: no chdir */
	char *const *env;
	unsigned limit_s;
	hook_enter_fn enter; /* NULL: stays root */
	const void *enter_arg;
};

/*
 * Runs the hook and waits for it, at most limit_s seconds (then its process group is killed).
 * Its output goes to hook_log() as "<name> <stdout|stderr>: <line>" lines. A hook that does not
 * exit with 0 fails the request (class hook, errno field = its exit code, 128+signal when killed,
 * HOOK_TIMED_OUT at the limit) with its last stderr lines.
 */
void run_module_hook(const struct hook_run *h);

/* The log lines the hooks of this request wrote, newline-separated ("" when none). */
const char *hook_log(void);

#endif
