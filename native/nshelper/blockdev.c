#define _GNU_SOURCE
#include "blockdev.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/loop.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "failure.h"
#include "filesystem.h"
#include "program.h"

/*
 * Every loop device reads its file through the page cache, a lazy image's FUSE file too: images
 * are immutable (named by their content digest), so pages the kernel keeps can never be stale,
 * and a warm read then stays in the kernel instead of going through FUSE to the lazy image
 * server (with LO_FLAGS_DIRECT_IO every read, warm or not, was a FUSE round trip through Node).
 * The FUSE file's page cache holds compressed blocks, squashfs's own the decompressed files,
 * both reclaimable.
 */
static int attach_loop(int backing, const char *image, int writable, char *dev, size_t devlen)
{
	int ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
	if (ctl < 0)
		die(errno, "open: /dev/loop-control");
	struct loop_config cfg;
	memset(&cfg, 0, sizeof(cfg));
	cfg.fd = (uint32_t)backing;
	cfg.info.lo_flags = (writable ? 0 : LO_FLAGS_READ_ONLY) | LO_FLAGS_AUTOCLEAR;
	snprintf((char *)cfg.info.lo_file_name, LO_NAME_SIZE, "%s", image);
	/* Concurrent attaches can be handed the same free device: retry on EBUSY. */
	for (int attempt = 0; attempt < 64; attempt++) {
		int n = ioctl(ctl, LOOP_CTL_GET_FREE);
		if (n < 0)
			die(errno, "LOOP_CTL_GET_FREE: /dev/loop-control");
		snprintf(dev, devlen, "/dev/loop%d", n);
		int loop = open(dev, (writable ? O_RDWR : O_RDONLY) | O_CLOEXEC);
		if (loop < 0)
			die(errno, "open: %s", dev);
		if (ioctl(loop, LOOP_CONFIGURE, &cfg) == 0) {
			if (close(ctl) < 0)
				die(errno, "close: /dev/loop-control");
			return loop;
		}
		int err = errno;
		close(loop);
		if (err != EBUSY)
			die(err, "LOOP_CONFIGURE: %s", dev);
	}
	die(EBUSY, "LOOP_CONFIGURE: no free loop device after 64 attempts");
}

/* An image file, read-only: a regular file named without a symlink at its end. */
static int open_image_file(const char *image)
{
	int fd = open(image, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		die(errno, "open image: %s", image);
	struct stat st;
	if (fstat(fd, &st) < 0)
		die(errno, "fstat: %s", image);
	if (!S_ISREG(st.st_mode))
		die(EINVAL, "open image: %s", image);
	return fd;
}

void cmd_attach_image(const char *image)
{
	int backing = open_image_file(image);
	char dev[64];
	int loop = attach_loop(backing, image, 0, dev, sizeof(dev));
	const struct fs_param params[] = { { "source", dev }, { "ro", NULL }, { NULL, NULL } };
	const struct new_fs fs = {
		.type = "squashfs",
		.params = params,
		.params_of = dev,
		.create_step = "mount squashfs (is it a squashfs image?)",
		.subject = image,
		.attr = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
	};
	int mnt = new_fs_mount(&fs);
	/* The superblock now holds the loop device; autoclear releases it with the last mount. */
	if (close(loop) < 0 || close(backing) < 0)
		die(errno, "close: %s", image);
	char text[96];
	snprintf(text, sizeof(text), "loop=%s", dev);
	send_result(text, &mnt, 1);
}

/* The file a bound loop device reads, as the kernel shows it; false when the device is not bound. */
static int loop_backing_file(const char *dev, char *out, size_t outlen)
{
	const char *name = strrchr(dev, '/');
	char path[128];
	snprintf(path, sizeof(path), "/sys/block/%s/loop/backing_file", name ? name + 1 : dev);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT)
			return 0;
		die(errno, "open: %s", path);
	}
	ssize_t n = read(fd, out, outlen - 1);
	int err = errno;
	if (close(fd) < 0)
		die(errno, "close: %s", path);
	if (n < 0)
		die(err, "read: %s", path);
	out[n] = '\0';
	if (n > 0 && out[n - 1] == '\n')
		out[n - 1] = '\0';
	return 1;
}

/*
 * LOOP_CHANGE_FD: a read-only loop device reads another file of the same size from now on (the
 * kernel refuses anything else), mounts over it untouched. Used to move a lazy image's loop device
 * from its FUSE file to the whole local copy. The device is held open before its backing file is
 * checked, so it cannot be cleared and reused for another image between the check and the switch.
 */
void cmd_move_loop(const char *request)
{
	char dev[64], from[4096], to[4096];
	if (sscanf(request, "%63[^\n]\n%4095[^\n]\n%4095[^\n]", dev, from, to) != 3 || strncmp(dev, "/dev/loop", 9))
		fail(FAILURE_SPEC, EINVAL, "move-loop: expected \"/dev/loopN\\n<from>\\n<to>\"");
	int file = open_image_file(to);
	int loop = open(dev, O_RDONLY | O_CLOEXEC);
	if (loop < 0)
		die(errno, "open: %s", dev);
	char current[4096];
	if (!loop_backing_file(dev, current, sizeof(current)) || strcmp(current, from))
		fail(FAILURE_MISSING, ENXIO, "move-loop: %s no longer reads %s", dev, from);
	if (ioctl(loop, LOOP_CHANGE_FD, file) < 0)
		die(errno, "LOOP_CHANGE_FD: %s to %s", dev, to);
	if (close(loop) < 0 || close(file) < 0)
		die(errno, "close: %s", dev);
	send_result("ok", NULL, 0);
}

static void run_mkfs(const struct op *op, const char *path)
{
	char bs[48] = "";
	const char *argv[10];
	int n = 0;
	argv[n++] = op->mkfs;
	if (!strcmp(op->fstype, "xfs")) {
		/* -K: no discard pass over a file that is all holes anyway. */
		argv[n++] = "-q";
		argv[n++] = "-f";
		argv[n++] = "-K";
		if (op->block_size)
			snprintf(bs, sizeof(bs), "size=%lu", op->block_size);
	} else {
		argv[n++] = "-q";
		argv[n++] = "-F";
		argv[n++] = "-E";
		argv[n++] = "nodiscard";
		if (op->block_size)
			snprintf(bs, sizeof(bs), "%lu", op->block_size);
	}
	if (bs[0]) {
		argv[n++] = "-b";
		argv[n++] = bs;
	}
	argv[n++] = path;
	argv[n] = NULL;
	char why[1024];
	if (run_program(argv, -1, why, sizeof(why)) < 0)
		fail(FAILURE_PROGRAM, 0, "%s: %s", op->mkfs, why);
}

void make_cache(struct op *op)
{
	char host[128];
	if (gethostname(host, sizeof(host)) < 0)
		die(errno, "gethostname: perNodeCache");
	host[sizeof(host) - 1] = '\0';
	for (char *c = host; *c; c++)
		if (*c == '/')
			*c = '_';
	char path[4096];
	if (snprintf(path, sizeof(path), "%s/perNodeCache_uid%u_gid%u_%s.%s.XXXXXX", op->source, op->uid, op->gid, host,
	             op->fstype) >= (int)sizeof(path))
		die(ENAMETOOLONG, "perNodeCache backing file: path too long");
	int fd = mkostemp(path, O_CLOEXEC);
	if (fd < 0)
		die(errno, "create perNodeCache backing file in: %s", op->source);
	failure_remove_on_failure(path);
	if (ftruncate(fd, (off_t)op->size) < 0)
		die(errno, "size perNodeCache backing file: %s", path);
	run_mkfs(op, path);
	char dev[64];
	int loop = attach_loop(fd, path, 1, dev, sizeof(dev));
	const struct fs_param params[] = { { "source", dev }, { NULL, NULL } };
	const struct new_fs fs = {
		.type = op->fstype,
		.params = params,
		.params_of = dev,
		.create_step = "mount perNodeCache",
		.subject = path,
		.attr = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
	};
	op->tree = new_fs_mount(&fs);
	if (fchownat(op->tree, "", op->uid, op->gid, AT_EMPTY_PATH) < 0)
		die(errno, "chown perNodeCache root: %s", op->target);
	if (unlink(path) < 0)
		die(errno, "unlink perNodeCache backing file: %s", path);
	failure_remove_on_failure(NULL);
	if (close(loop) < 0 || close(fd) < 0)
		die(errno, "close: %s", path);
}
