#define _GNU_SOURCE
#include "local-root.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <inttypes.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/fsuid.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "failure.h"

#define MAX_LOCAL_GROUPS 1024

static unsigned parse_id(const char **p, char end, const char *what)
{
	char *after;
	errno = 0;
	unsigned long v = strtoul(*p, &after, 10);
	if (errno || after == *p || *after != end || v >= (unsigned long)(uid_t)-1)
		fail(FAILURE_SPEC, EINVAL, "attach-local: bad %s", what);
	*p = after + 1;
	return (unsigned)v;
}

static void become_user_fs(uid_t uid, gid_t gid, const gid_t *groups, size_t ngroups)
{
	if (uid == 0)
		fail(FAILURE_SPEC, EPERM, "attach-local: refusing uid 0");
	if (setgroups(ngroups, groups) < 0)
		die(errno, "setgroups: local image");
	setfsgid(gid);
	setfsuid(uid);
	if ((uid_t)setfsuid((uid_t)-1) != uid || (gid_t)setfsgid((gid_t)-1) != gid)
		die(EPERM, "setfsuid/setfsgid: local image");
}

static void back_to_root(void)
{
	setfsuid(0);
	setfsgid(0);
	if (setfsuid((uid_t)-1) != 0 || setfsgid((gid_t)-1) != 0 || setgroups(0, NULL) < 0)
		die(EPERM, "setfsuid/setfsgid: back to root");
}

void cmd_attach_local(const char *args)
{
	const char *p = args;
	uid_t uid = parse_id(&p, ' ', "uid");
	gid_t gid = parse_id(&p, ' ', "gid");
	gid_t groups[MAX_LOCAL_GROUPS];
	size_t ngroups = 0;
	if (!strncmp(p, "- ", 2)) {
		p += 2;
	} else {
		for (;;) {
			if (ngroups == MAX_LOCAL_GROUPS)
				fail(FAILURE_SPEC, E2BIG, "attach-local: too many groups");
			const char *comma = strchr(p, ','), *space = strchr(p, ' ');
			int last = !comma || (space && space < comma);
			groups[ngroups++] = parse_id(&p, last ? ' ' : ',', "group");
			if (last)
				break;
		}
	}
	const char *path = p;
	if (path[0] != '/')
		fail(FAILURE_SPEC, EINVAL, "attach-local: path is not absolute: %s", path);

	/*
	 * As the user: a tree they cannot read and search is refused, and no symlink on the path is
	 * followed (a link could lead the root helper anywhere the user points it).
	 */
	become_user_fs(uid, gid, groups, ngroups);
	struct open_how how = {
		.flags = O_RDONLY | O_DIRECTORY | O_CLOEXEC,
		.resolve = RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
	};
	int dir = (int)syscall(SYS_openat2, AT_FDCWD, path, &how, sizeof(how));
	int err = dir < 0 ? errno : 0;
	if (!err && faccessat(dir, "", R_OK | X_OK, AT_EMPTY_PATH | AT_EACCESS) < 0)
		err = errno;
	back_to_root();
	if (err == ELOOP)
		fail(FAILURE_UNSAFE, err, "open local image as the user (a symlink is on the path): %s", path);
	if (err == ENOTDIR)
		fail(FAILURE_MISSING, err, "open local image as the user (not a directory): %s", path);
	if (err)
		die(err, "open local image as the user: %s", path);

	/*
	 * With the mounts below it: a single-level clone would show the user what host mounts
	 * cover under the tree. Never setuid, never device nodes.
	 */
	int tree = open_tree(dir, "", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE | AT_EMPTY_PATH);
	if (tree < 0)
		die(errno, "open_tree local image: %s", path);
	struct mount_attr attr = { .attr_set = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV, .propagation = MS_PRIVATE };
	if (mount_setattr(tree, "", AT_EMPTY_PATH | AT_RECURSIVE, &attr, sizeof(attr)) < 0)
		die(errno, "mount_setattr: %s", path);
	struct stat st;
	if (fstat(dir, &st) < 0 || close(dir) < 0)
		die(errno, "fstat: %s", path);
	char text[96];
	snprintf(text, sizeof(text), "dev=%u:%u ino=%" PRIu64, major(st.st_dev), minor(st.st_dev), (uint64_t)st.st_ino);
	send_result(text, &tree, 1);
}
