/* `local:` images: a directory tree on the node, opened as the user, as the container root. */
#ifndef NSHELPER_LOCAL_ROOT_H
#define NSHELPER_LOCAL_ROOT_H

/*
 * "attach-local <uid> <gid> <g1,g2,...|-> <absolute dir>": opens the directory with the user's
 * fsuid/fsgid/groups (no symlink anywhere on the path), clones it with the mounts below it,
 * nosuid and nodev, and answers "dev=<major>:<minor> ino=<n>" + [detached mount fd].
 */
void cmd_attach_local(const char *args);

#endif
