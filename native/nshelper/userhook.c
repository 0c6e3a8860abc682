#define _GNU_SOURCE
#include "userhook.h"

#include <errno.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/nsfs.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "failure.h"
#include "hook.h"
#include "spec.h"

#define MAX_ENV 4096

/* Who the hook runs as and where: the launcher's own sequence (native/launcher/launcher.c). */
struct user_target {
	uid_t uid;
	gid_t gid;
	gid_t groups[MAX_GROUPS];
	int ngroups;
	int userns, mntns;
	const char *cwd;
	int last_cap;
};

struct request {
	struct user_target user;
	const char *module, *script;
	unsigned long seconds;
	char *env[MAX_ENV + 1];
};

static const char *next(char **p, const char *end, const char *what)
{
	if (*p >= end)
		fail(FAILURE_SPEC, EINVAL, "run-userhook: missing %s", what);
	char *tok = *p;
	char *nul = memchr(tok, '\0', (size_t)(end - tok));
	if (!nul)
		fail(FAILURE_SPEC, EINVAL, "run-userhook: unterminated %s", what);
	*p = nul + 1;
	return tok;
}

static unsigned long number(const char *s, const char *what)
{
	char *e;
	errno = 0;
	unsigned long v = strtoul(s, &e, 10);
	if (errno || e == s || *e)
		fail(FAILURE_SPEC, EINVAL, "run-userhook: bad %s: %s", what, s);
	return v;
}

static void expect(char **p, const char *end, const char *key)
{
	if (strcmp(next(p, end, key), key))
		fail(FAILURE_SPEC, EINVAL, "run-userhook: expected %s", key);
}

static void parse(char *data, size_t len, struct request *r)
{
	char *p = data, *end = data + len;
	expect(&p, end, "uid");
	r->user.uid = (uid_t)number(next(&p, end, "uid"), "uid");
	expect(&p, end, "gid");
	r->user.gid = (gid_t)number(next(&p, end, "gid"), "gid");
	expect(&p, end, "groups");
	char *groups = (char *)next(&p, end, "groups");
	for (char *save = NULL, *g = strtok_r(groups, ",", &save); g; g = strtok_r(NULL, ",", &save)) {
		if (r->user.ngroups == MAX_GROUPS)
			fail(FAILURE_SPEC, E2BIG, "run-userhook: too many groups");
		r->user.groups[r->user.ngroups++] = (gid_t)number(g, "group");
	}
	expect(&p, end, "cwd");
	r->user.cwd = next(&p, end, "cwd");
	expect(&p, end, "module");
	r->module = next(&p, end, "module");
	expect(&p, end, "script");
	r->script = next(&p, end, "script");
	expect(&p, end, "seconds");
	r->seconds = number(next(&p, end, "seconds"), "seconds");
	expect(&p, end, "env");
	int n = 0;
	for (;;) {
		const char *e = next(&p, end, "env entry or end");
		if (!strcmp(e, "end"))
			break;
		if (n == MAX_ENV || !strchr(e, '='))
			fail(FAILURE_SPEC, EINVAL, "run-userhook: bad or too many env entries");
		r->env[n++] = (char *)e;
	}
	r->env[n] = NULL;
	if (p != end)
		fail(FAILURE_SPEC, EINVAL, "run-userhook: bytes after \"end\"");
	if (r->user.uid == 0 || r->user.gid == 0)
		fail(FAILURE_SPEC, EPERM, "run-userhook: refusing to run a hook as uid 0 or gid 0");
	for (int i = 0; i < r->user.ngroups; i++)
		if (r->user.groups[i] == 0)
			fail(FAILURE_SPEC, EPERM, "run-userhook: refusing group 0");
	if (r->script[0] != '/' || r->user.cwd[0] != '/')
		fail(FAILURE_SPEC, EINVAL, "run-userhook: script and cwd must be absolute paths: %s", r->script);
	if (r->seconds == 0 || r->seconds > 86400)
		fail(FAILURE_SPEC, EINVAL, "run-userhook: time limit must be 1..86400 seconds");
}

/* The namespaces must be the user's own: the helper never puts a hook into someone else's. */
static void check_ns(int fd, int type, uid_t uid)
{
	if (ioctl(fd, NS_GET_NSTYPE) != type)
		fail(FAILURE_SPEC, EINVAL, "run-userhook: namespace fd of the wrong kind");
	if (type != CLONE_NEWUSER)
		return;
	uid_t owner;
	if (ioctl(fd, NS_GET_OWNER_UID, &owner) < 0)
		die(errno, "run-userhook: NS_GET_OWNER_UID");
	if (owner != uid)
		fail(FAILURE_SPEC, EPERM, "run-userhook: the user namespace belongs to uid %u, not %u", owner, uid);
}

static int last_capability(void)
{
	int last = CAP_LAST_CAP;
	FILE *f = fopen("/proc/sys/kernel/cap_last_cap", "re");
	if (f) {
		if (fscanf(f, "%d", &last) != 1 || last < CAP_LAST_CAP)
			last = CAP_LAST_CAP;
		fclose(f);
	}
	return last;
}

/* In the hook's process, as root: the user's ids first, then their namespaces, then no way back. */
static void become_user(const void *arg)
{
	const struct user_target *u = arg;
	if (setgroups((size_t)u->ngroups, u->groups) < 0 || setresgid(u->gid, u->gid, u->gid) < 0 ||
	    setresuid(u->uid, u->uid, u->uid) < 0) {
		dprintf(2, "cannot become uid %u: %s\n", u->uid, strerror(errno));
		_exit(126);
	}
	if (setns(u->userns, CLONE_NEWUSER) < 0 || setns(u->mntns, CLONE_NEWNS) < 0) {
		dprintf(2, "cannot enter the container: %s\n", strerror(errno));
		_exit(126);
	}
	if (chdir(u->cwd) < 0 && chdir("/") < 0) {
		dprintf(2, "cannot enter /: %s\n", strerror(errno));
		_exit(126);
	}
	for (int cap = 0; cap <= u->last_cap; cap++)
		if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0)
			_exit(126);
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 || prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		_exit(126);
}

void cmd_run_userhook(int body_fd, int userns_fd, int mntns_fd)
{
	size_t len;
	char *data = read_spec(body_fd, &len);
	if (close(body_fd) < 0)
		die(errno, "close: run-userhook body");
	struct request *r = calloc(1, sizeof(*r));
	if (!r)
		die(ENOMEM, "run-userhook: out of memory");
	parse(data, len, r);
	check_ns(userns_fd, CLONE_NEWUSER, r->user.uid);
	check_ns(mntns_fd, CLONE_NEWNS, r->user.uid);
	r->user.userns = userns_fd;
	r->user.mntns = mntns_fd;
	r->user.last_cap = last_capability();
	char name[128];
	snprintf(name, sizeof(name), "module %s userhook", r->module);
	struct hook_run h = { .name = name,
		              .script = r->script,
		              .cwdfd = -1,
		              .env = r->env,
		              .limit_s = (unsigned)r->seconds,
		              .enter = become_user,
		              .enter_arg = &r->user };
	run_module_hook(&h);
	char text[16 + HOOK_LOG_MAX];
	snprintf(text, sizeof(text), "ok\n%s", hook_log());
	send_result(text, NULL, 0);
}
