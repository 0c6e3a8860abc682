#define _GNU_SOURCE
#include "resolve.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "failure.h"

static int open_in_root(int root, const char *path, int flags, uint64_t resolve)
{
	struct open_how how = {
		.flags = (uint64_t)(flags | O_CLOEXEC),
		.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS | resolve,
	};
	return (int)syscall(SYS_openat2, root, path, &how, sizeof(how));
}

static int on_image_or_scaffold(const struct container_root *root, int fd)
{
	struct stat st;
	return fstat(fd, &st) == 0 && (st.st_dev == root->scaffold_dev || st.st_dev == root->image_dev);
}

/*
 * A component that is a symlink: followed inside the container root (RESOLVE_IN_ROOT: `..`
 * and absolute links stay in the root, so `/lib64 -> usr/lib64` works and `evil -> /etc`
 * means the container's /etc), only when follow is set, the link is in the image or on the
 * scaffold (never in a host directory bound in, whose content others control) and where it
 * leads is in the image or on the scaffold too (never into a host bind).
 */
static enum resolve_result follow_link(const struct container_root *root, int dir, const char *prefix, int flags,
                                       int follow, int *fd, int *err)
{
	if (!follow)
		return RESOLVE_LINK_REFUSED;
	if (!on_image_or_scaffold(root, dir))
		return RESOLVE_LINK_OUTSIDE;
	*fd = open_in_root(root->fd, prefix, flags, 0);
	if (*fd < 0) {
		*err = errno;
		return RESOLVE_FAILED;
	}
	if (!on_image_or_scaffold(root, *fd)) {
		close(*fd);
		*fd = -1;
		return RESOLVE_LINK_LEADS_OUT;
	}
	return RESOLVED;
}

/* One component c of the path (prefix: the path up to and including it) below dir. */
static enum resolve_result open_component(const struct container_root *root, int dir, const char *c, const char *prefix,
                                          int flags, int follow, int *fd, int *err)
{
	*fd = open_in_root(dir, c, flags, RESOLVE_NO_SYMLINKS);
	if (*fd >= 0)
		return RESOLVED;
	*err = errno;
	if (*err == ELOOP)
		return follow_link(root, dir, prefix, flags, follow, fd, err);
	return RESOLVE_FAILED;
}

enum resolve_result resolve_parent(const struct container_root *root, const char *target, int follow, int *dir,
                                   const char **name, int *err)
{
	char parent[4096];
	snprintf(parent, sizeof(parent), "%s", target);
	while (strlen(parent) > 1 && parent[strlen(parent) - 1] == '/')
		parent[strlen(parent) - 1] = '\0';
	char *slash = strrchr(parent, '/');
	*name = target + (slash - parent) + 1;
	if (!**name || !strcmp(*name, ".") || !strcmp(*name, ".."))
		return RESOLVE_BAD_NAME;
	*slash = '\0';
	*dir = fcntl(root->fd, F_DUPFD_CLOEXEC, 0);
	if (*dir < 0)
		die(errno, "dup: root");
	char *save = NULL;
	for (char *c = strtok_r(parent, "/", &save); c; c = strtok_r(NULL, "/", &save)) {
		if (!strcmp(c, "."))
			continue;
		char prefix[4096];
		snprintf(prefix, sizeof(prefix), "%.*s", (int)(c - parent + (ptrdiff_t)strlen(c)), target);
		int next;
		enum resolve_result r = open_component(root, *dir, c, prefix, O_PATH | O_DIRECTORY, follow, &next, err);
		if (r == RESOLVE_FAILED && *err == ENOENT) {
			if (mkdirat(*dir, c, 0755) < 0) {
				*err = errno;
				r = RESOLVE_MKDIR_FAILED;
			} else {
				r = open_component(root, *dir, c, prefix, O_PATH | O_DIRECTORY, 0, &next, err);
			}
		}
		if (r != RESOLVED) {
			close(*dir);
			*dir = -1;
			return r;
		}
		if (close(*dir) < 0)
			die(errno, "close: %s", target);
		*dir = next;
	}
	return RESOLVED;
}

enum resolve_result resolve_last(const struct container_root *root, int dir, const char *name, const char *target,
                                 int follow, int *fd, int *err)
{
	return open_component(root, dir, name, target, O_PATH, follow, fd, err);
}

void resolve_fail(enum resolve_result result, int err, const char *target)
{
	switch (result) {
	case RESOLVE_BAD_NAME:
		die(EINVAL, "resolve target: %s", target);
	case RESOLVE_LINK_REFUSED:
		fail(FAILURE_UNSAFE, ELOOP, "resolve target (a symlink is on the path; refused for user volumes): %s",
		     target);
	case RESOLVE_LINK_OUTSIDE:
		fail(FAILURE_UNSAFE, ELOOP, "resolve target (a symlink outside the image is on the path; refused): %s",
		     target);
	case RESOLVE_LINK_LEADS_OUT:
		fail(FAILURE_UNSAFE, EXDEV,
		     "resolve target (a symlink in the image leads out of the image; refused): %s", target);
	case RESOLVE_MKDIR_FAILED:
		if (err == EROFS)
			die(err,
			    "create mount point parent (it would be in the image: create it there or list its parent "
			    "in scaffoldDirs): %s",
			    target);
		die(err, "create mount point parent: %s", target);
	case RESOLVED:
	case RESOLVE_FAILED:
		break;
	}
	die(err, "resolve target: %s", target);
}
