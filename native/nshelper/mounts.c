#define _GNU_SOURCE
#include "mounts.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <string.h>
#include <sys/fsuid.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "failure.h"
#include "filesystem.h"
#include "hook.h"
#include "program.h"

/* ---- sources, in the host mount namespace ---- */

static void set_fs_identity(const struct spec *s, int as_user)
{
	if (as_user) {
		if (setgroups((size_t)s->ngroups, s->groups) < 0)
			die(errno, "setgroups: user volume");
		setfsgid(s->gid);
		setfsuid(s->uid);
		if ((uid_t)setfsuid((uid_t)-1) != s->uid || (gid_t)setfsgid((gid_t)-1) != s->gid)
			die(EPERM, "setfsuid/setfsgid: user volume");
	} else {
		setfsuid(0);
		setfsgid(0);
		if (setfsuid((uid_t)-1) != 0 || setfsgid((gid_t)-1) != 0)
			die(EPERM, "setfsuid/setfsgid: back to root");
		if (setgroups(0, NULL) < 0)
			die(errno, "setgroups: back to root");
	}
}

void clone_source(const struct spec *s, struct op *op)
{
	/*
	 * A user volume is always cloned with the mounts below it, nosuid and nodev: a single-level
	 * clone would show the user what host mounts cover under the source (the kernel refuses
	 * an unprivileged user exactly that bind), and a user never gets device nodes.
	 */
	if (op->as_user) {
		op->recursive = 1;
		op->attr |= MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;
	}
	int from = AT_FDCWD, flags = OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | (op->recursive ? AT_RECURSIVE : 0);
	const char *path = op->source;
	if (op->as_user) {
		set_fs_identity(s, 1);
		/* No magic links: /proc/self/{root,cwd,fd/N} would name this root helper's own fds. */
		struct open_how how = { .flags = O_PATH | O_CLOEXEC, .resolve = RESOLVE_NO_MAGICLINKS };
		from = (int)syscall(SYS_openat2, AT_FDCWD, op->source, &how, sizeof(how));
		struct stat st;
		int err = from < 0 || fstat(from, &st) < 0 ? errno : 0;
		if (!err &&
		    faccessat(from, "", S_ISDIR(st.st_mode) ? R_OK | X_OK : R_OK, AT_EMPTY_PATH | AT_EACCESS) < 0)
			err = errno;
		set_fs_identity(s, 0);
		if (err)
			die(err, "open volume source as the user: %s", op->source);
		path = "";
		flags |= AT_EMPTY_PATH;
	}
	op->tree = open_tree(from, path, flags);
	if (op->tree < 0)
		die(errno, "open bind source: %s", op->source);
	/* Device access is for character devices (and directories of them): never a disk. */
	struct stat st;
	if (!(op->attr & MOUNT_ATTR_NODEV) && (fstat(op->tree, &st) < 0 || S_ISBLK(st.st_mode)))
		fail(FAILURE_SPEC, EPERM, "spec: refusing a block device with device access: %s", op->source);
	if (from >= 0 && close(from) < 0)
		die(errno, "close: %s", op->source);
	struct mount_attr attr = { .attr_set = op->attr, .propagation = op->slave ? MS_SLAVE : MS_PRIVATE };
	if (mount_setattr(op->tree, "", AT_EMPTY_PATH | (op->recursive ? AT_RECURSIVE : 0), &attr, sizeof(attr)) < 0)
		die(errno, "mount_setattr: %s", op->source);
}

/* ---- on the new root ---- */

static int open_parent(const struct container_root *root, const char *target, int follow, const char **name)
{
	int dir, err = 0;
	enum resolve_result r = resolve_parent(root, target, follow, &dir, name, &err);
	if (r != RESOLVED)
		resolve_fail(r, err, target);
	return dir;
}

static void remove_existing(int dir, const char *name, const char *target)
{
	struct stat st;
	if (fstatat(dir, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
		if (errno == ENOENT)
			return;
		die(errno, "stat: %s", target);
	}
	if (S_ISDIR(st.st_mode))
		die(EISDIR, "replace: %s", target);
	if (unlinkat(dir, name, 0) < 0) {
		if (errno == EROFS)
			die(errno, "replace (the directory is in the image: list it in scaffoldDirs): %s", target);
		die(errno, "replace: %s", target);
	}
}

/* Creates the mount point when missing, then moves the detached mount tree onto it. */
static void attach(const struct container_root *root, int tree, const char *target, int follow)
{
	struct stat st;
	if (fstat(tree, &st) < 0)
		die(errno, "fstat mount: %s", target);
	const char *name;
	int parent = open_parent(root, target, follow, &name);
	struct stat cur;
	if (fstatat(parent, name, &cur, AT_SYMLINK_NOFOLLOW) < 0) {
		if (errno != ENOENT)
			die(errno, "stat mount point: %s", target);
		int rc;
		if (S_ISDIR(st.st_mode)) {
			rc = mkdirat(parent, name, 0755);
		} else {
			rc = openat(parent, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
			if (rc >= 0)
				rc = close(rc);
		}
		if (rc < 0 && errno == EROFS)
			die(errno,
			    "create mount point (the parent is in the image: create it there or list the parent in "
			    "scaffoldDirs): %s",
			    target);
		if (rc < 0)
			die(errno, "create mount point: %s", target);
	}
	int at, err = 0;
	enum resolve_result r = resolve_last(root, parent, name, target, follow, &at, &err);
	if (r != RESOLVED)
		resolve_fail(r, err, target);
	if (move_mount(tree, "", at, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) < 0)
		die(errno, "move_mount: %s", target);
	if (close(at) < 0 || close(parent) < 0 || close(tree) < 0)
		die(errno, "close: %s", target);
}

static void write_file(const struct container_root *root, const struct op *op)
{
	const char *name;
	int parent = open_parent(root, op->target, 1, &name);
	remove_existing(parent, name, op->target);
	int fd = openat(parent, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		die(errno, "create file: %s", op->target);
	if (fdio_write_all(fd, op->source, strlen(op->source)) < 0)
		die(errno, "write file: %s", op->target);
	if (fchmod(fd, (mode_t)op->mode) < 0)
		die(errno, "chmod file: %s", op->target);
	if (close(fd) < 0 || close(parent) < 0)
		die(errno, "close: %s", op->target);
}

/* Upstream's sitePreMountHook/sitePostMountHook: `/bin/sh SCRIPT` as root, cwd = the new root. */
static void run_hook(const struct container_root *root, const struct op *op)
{
	const char *argv[] = { "/bin/sh", op->source, NULL };
	char why[1024];
	if (run_program(argv, root->fd, why, sizeof(why)) < 0)
		fail(FAILURE_PROGRAM, 0, "%s %s: %s", op->target, op->source, why);
}

/* Upstream's module roothook: `/bin/sh SCRIPT` as root, cwd = the new root, before the user's volumes. */
static void run_roothook(const struct container_root *root, const struct op *op)
{
	char name[128];
	snprintf(name, sizeof(name), "module %s roothook", op->target);
	char *const env[] = { CLEAN_PATH, NULL };
	struct hook_run h = {
		.name = name, .script = op->source, .cwdfd = root->fd, .env = env, .limit_s = (unsigned)op->size
	};
	run_module_hook(&h);
}

void apply(const struct container_root *root, struct op *op)
{
	const char *name;
	int parent, mnt;
	switch (op->kind) {
	case OP_BIND:
	case OP_CACHE:
		/* User volumes (and caches) never follow symlinks: the /etc rules on their targets hold. */
		attach(root, op->tree, op->target, op->kind == OP_BIND && !op->as_user);
		op->tree = -1;
		break;
	case OP_FILE:
		write_file(root, op);
		break;
	case OP_SYMLINK:
		parent = open_parent(root, op->target, 1, &name);
		remove_existing(parent, name, op->target);
		if (symlinkat(op->source, parent, name) < 0 || close(parent) < 0)
			die(errno, "symlink: %s", op->target);
		break;
	case OP_DIR:
		parent = open_parent(root, op->target, 1, &name);
		if (mkdirat(parent, name, (mode_t)op->mode) < 0 && errno != EEXIST)
			die(errno, "mkdir: %s", op->target);
		if (fchmodat(parent, name, (mode_t)op->mode, AT_SYMLINK_NOFOLLOW) < 0 && errno != EOPNOTSUPP)
			die(errno, "chmod: %s", op->target);
		if (close(parent) < 0)
			die(errno, "close: %s", op->target);
		break;
	case OP_TMPFS:
		mnt = new_virtual_fs("tmpfs", op->target, op->mode ? op->mode : 01777, op->size, op->attr);
		attach(root, mnt, op->target, 1);
		break;
	case OP_PROC:
		mnt = new_virtual_fs("proc", op->target, 0, 0,
		                     MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC);
		attach(root, mnt, op->target, 1);
		break;
	case OP_HOOK:
		run_hook(root, op);
		break;
	case OP_ROOTHOOK:
		run_roothook(root, op);
		break;
	}
}
