/* Block devices and images: loop devices, the squashfs image mount, perNodeCache filesystems. */
#ifndef NSHELPER_BLOCKDEV_H
#define NSHELPER_BLOCKDEV_H

#include "spec.h"

/* "attach-image <file>": answers "loop=/dev/loopN" + [detached read-only squashfs mount]. */
void cmd_attach_image(const char *image);

/* "move-loop /dev/loopN\n<file it reads>\n<same-size file>": answers "ok"; see blockdev.c. */
void cmd_move_loop(const char *request);

/*
 * A perNodeCache (upstream's per-node scratch volume): a sparse file in the backing directory,
 * a fresh filesystem on it on a read-write autoclear loop device, mounted detached
 * (nosuid, nodev) into op->tree with its root owned by the user. The file is unlinked at once:
 * its space comes back when the last mount of it goes, with the environment.
 */
void make_cache(struct op *op);

#endif
