/*
 * Path resolution inside the container root under construction. Targets are walked one
 * component at a time with openat2(RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS);
 * a symlink on the path is followed inside the root only under the rules of native/README.md
 * (step 4). Outcomes are values (enum resolve_result); resolve_fail() turns one into the
 * request's failure.
 */
#ifndef NSHELPER_RESOLVE_H
#define NSHELPER_RESOLVE_H

#include <sys/types.h>

#include "../common/fdio.h"

struct container_root {
	int fd;
	/* The filesystems a symlink may live on and lead to: the scaffold and the image. */
	dev_t scaffold_dev, image_dev;
};

enum resolve_result {
	RESOLVED,
	RESOLVE_FAILED,         /* a system call failed (errno in *err) */
	RESOLVE_BAD_NAME,       /* the last component is empty, "." or ".." */
	RESOLVE_LINK_REFUSED,   /* a symlink on the path of a target that never follows them */
	RESOLVE_LINK_OUTSIDE,   /* a symlink that is not in the image or on the scaffold */
	RESOLVE_LINK_LEADS_OUT, /* a symlink in the image that leads out of the image and scaffold */
	RESOLVE_MKDIR_FAILED,   /* a missing directory could not be made (EROFS: it is in the image) */
};

/*
 * The parent directory of target (an O_PATH fd in *dir) and the last component (*name, inside
 * target). Missing directories are created (mkdir -p), which only succeeds on the scaffold.
 * follow: whether symlinks on the path may be followed (never for user volumes and caches).
 */
enum resolve_result resolve_parent(const struct container_root *root, const char *target, int follow, int *dir,
                                   const char **name, int *err);

/* name in the parent dir, as an O_PATH fd in *fd, following a last symlink under the same rules. */
enum resolve_result resolve_last(const struct container_root *root, int dir, const char *name, const char *target,
                                 int follow, int *fd, int *err);

/* Fails the request for an outcome other than RESOLVED. */
NORETURN void resolve_fail(enum resolve_result result, int err, const char *target);

#endif
