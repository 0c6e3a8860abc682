/* The mounts of a create-env spec: their sources, cloned on the host, then applied on the new root. */
#ifndef NSHELPER_MOUNTS_H
#define NSHELPER_MOUNTS_H

#include "resolve.h"
#include "spec.h"

/*
 * Detached clone of a bind source into op->tree, its flags and propagation set before it is
 * visible anywhere. Runs in the host mount namespace. A user volume is opened as the user, who
 * must be able to read it (and search it, for a directory); the clone is then made from that
 * fd, so root's credentials never resolve the user's path.
 */
void clone_source(const struct spec *s, struct op *op);

/* Applies one op on the container root (attaching op->tree for binds and caches). */
void apply(const struct container_root *root, struct op *op);

#endif
