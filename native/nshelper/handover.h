/*
 * The hand-over to the user: a child becomes the user and copies the finished mount namespace
 * into a user namespace of its own (which locks every mount); the root parent maps only the
 * user's uid and groups into it and takes its two namespace fds.
 */
#ifndef NSHELPER_HANDOVER_H
#define NSHELPER_HANDOVER_H

#include "spec.h"

/* fds[0]: the user namespace, fds[1]: the mount namespace. image_fd is closed in the child. */
void hand_over(const struct spec *s, int procfd, int image_fd, int fds[2]);

#endif
