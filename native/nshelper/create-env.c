#define _GNU_SOURCE
#include "create-env.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "blockdev.h"
#include "failure.h"
#include "filesystem.h"
#include "handover.h"
#include "hook.h"
#include "mounts.h"
#include "scaffold.h"
#include "spec.h"

/* Where the scaffold is attached in the helper's private namespace: a directory of its own, so
 * that hooks and mkfs still see the host's /tmp. */
#define STAGING "/run/shifter-nshelper"

static long elapsed_us(const struct timespec *since)
{
	struct timespec now;
	if (clock_gettime(CLOCK_MONOTONIC, &now) < 0)
		die(errno, "clock_gettime: CLOCK_MONOTONIC");
	return (now.tv_sec - since->tv_sec) * 1000000L + (now.tv_nsec - since->tv_nsec) / 1000;
}

/* The staging directory: made once, root's own, so nobody can swap it for a symlink. */
static void ensure_staging(void)
{
	if (mkdir(STAGING, 0700) < 0 && errno != EEXIST)
		die(errno, "mkdir staging directory: %s", STAGING);
	struct stat st;
	if (lstat(STAGING, &st) < 0)
		die(errno, "stat staging directory: %s", STAGING);
	if (!S_ISDIR(st.st_mode) || st.st_uid != 0 || (st.st_mode & 022))
		die(0, "staging directory is not a root-owned directory writable only by root: %s", STAGING);
}

static dev_t device_of(int fd, const char *what)
{
	struct stat st;
	if (fstat(fd, &st) < 0)
		die(errno, "fstat: %s", what);
	return st.st_dev;
}

/* Steps 2 and 3: the scaffold on the staging point, populated from the image clone. */
static struct container_root build_scaffold(const struct spec *s, int image)
{
	struct container_root root;
	root.fd = new_virtual_fs("tmpfs", "scaffold", 0755, 64ul << 20, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV);
	if (move_mount(root.fd, "", AT_FDCWD, STAGING, MOVE_MOUNT_F_EMPTY_PATH) < 0)
		die(errno, "move_mount scaffold: %s", STAGING);
	if (mkdirat(root.fd, IMAGE_STAGING, 0700) < 0)
		die(errno, "mkdir: %s", IMAGE_STAGING);
	root.scaffold_dev = device_of(root.fd, "scaffold");
	root.image_dev = device_of(image, "image");
	if (move_mount(image, "", root.fd, IMAGE_STAGING, MOVE_MOUNT_F_EMPTY_PATH) < 0)
		die(errno, "move_mount image: %s", IMAGE_STAGING);
	populate(s, image, root.fd, "/");
	if (umount2(STAGING "/" IMAGE_STAGING, MNT_DETACH | UMOUNT_NOFOLLOW) < 0)
		die(errno, "umount: %s", STAGING "/" IMAGE_STAGING);
	if (close(image) < 0 || unlinkat(root.fd, IMAGE_STAGING, AT_REMOVEDIR) < 0)
		die(errno, "remove: %s", IMAGE_STAGING);
	return root;
}

/* Step 5: the scaffold read-only becomes this process's root. */
static void enter_root(int root)
{
	struct mount_attr ro = { .attr_set = MOUNT_ATTR_RDONLY };
	if (mount_setattr(root, "", AT_EMPTY_PATH, &ro, sizeof(ro)) < 0)
		die(errno, "make scaffold read-only: /");
	if (fchdir(root) < 0)
		die(errno, "fchdir: scaffold");
	if (syscall(SYS_pivot_root, ".", ".") < 0)
		die(errno, "pivot_root: scaffold");
	if (umount2(".", MNT_DETACH) < 0)
		die(errno, "umount old root: .");
	if (chdir("/") < 0 || close(root) < 0)
		die(errno, "chdir: /");
}

void cmd_create_env(int spec_fd, int image_fd)
{
	struct timespec started;
	if (clock_gettime(CLOCK_MONOTONIC, &started) < 0)
		die(errno, "clock_gettime: CLOCK_MONOTONIC");
	struct spec *s = calloc(1, sizeof(*s));
	if (!s)
		die(ENOMEM, "spec: out of memory");
	size_t len;
	char *data = read_spec(spec_fd, &len);
	if (close(spec_fd) < 0)
		die(errno, "close: spec");
	parse_spec(data, len, s);

	/* Step 1, in the host mount namespace. */
	int procfd = open("/proc", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (procfd < 0)
		die(errno, "open: /proc");
	/* Recursive: a local image tree (attach-local) keeps the mounts that cover parts of it. */
	int image = open_tree(image_fd, "", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_EMPTY_PATH | AT_RECURSIVE);
	if (image < 0)
		die(errno, "open_tree image mount: the image fd");
	for (int i = 0; i < s->nops; i++) {
		if (s->ops[i].kind == OP_BIND)
			clone_source(s, &s->ops[i]);
		else if (s->ops[i].kind == OP_CACHE)
			make_cache(&s->ops[i]);
	}

	ensure_staging();
	if (unshare(CLONE_NEWNS) < 0)
		die(errno, "unshare: CLONE_NEWNS");
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
		die(errno, "make rprivate: /");
	struct container_root root = build_scaffold(s, image);
	for (int i = 0; i < s->nops; i++)
		apply(&root, &s->ops[i]);
	enter_root(root.fd);

	int fds[2];
	hand_over(s, procfd, image_fd, fds);
	/* The roothooks' output follows, one log line each, for the daemon's log. */
	char text[64 + HOOK_LOG_MAX];
	snprintf(text, sizeof(text), "ok us=%ld\n%s", elapsed_us(&started), hook_log());
	send_result(text, fds, 2);
}
