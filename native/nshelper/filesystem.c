#define _GNU_SOURCE
#include "filesystem.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <unistd.h>

#include "failure.h"

/* The kernel explains fsconfig failures in a message readable from the fs context fd. */
static NORETURN void die_fs(int fsfd, int err, const char *step, const char *what)
{
	char msg[512];
	ssize_t n = read(fsfd, msg, sizeof(msg) - 1);
	if (n > 0) {
		msg[n] = '\0';
		msg[strcspn(msg, "\n")] = '\0';
		fail_explained(failure_class_of(err), err, "%s: %s: %s (%s)", step, what, strerror(err), msg);
	}
	die(err, "%s: %s", step, what);
}

int new_fs_mount(const struct new_fs *fs)
{
	int fsfd = fsopen(fs->type, FSOPEN_CLOEXEC);
	if (fsfd < 0)
		die(errno, "fsopen: %s", fs->type);
	for (const struct fs_param *p = fs->params; p && p->key; p++) {
		int rc = p->value ? fsconfig(fsfd, FSCONFIG_SET_STRING, p->key, p->value, 0)
		                  : fsconfig(fsfd, FSCONFIG_SET_FLAG, p->key, NULL, 0);
		if (rc < 0) {
			char step[64];
			snprintf(step, sizeof(step), "fsconfig %s", p->key);
			die_fs(fsfd, errno, step, fs->params_of);
		}
	}
	if (fsconfig(fsfd, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0)
		die_fs(fsfd, errno, fs->create_step, fs->subject);
	int mnt = fsmount(fsfd, FSMOUNT_CLOEXEC, fs->attr);
	if (mnt < 0)
		die(errno, "fsmount: %s", fs->subject);
	if (close(fsfd) < 0)
		die(errno, "close: %s", fs->subject);
	return mnt;
}

int new_virtual_fs(const char *type, const char *what, unsigned long mode, unsigned long size, unsigned int attr)
{
	char mode_text[32], size_text[32];
	struct fs_param params[3] = { { NULL, NULL } };
	int n = 0;
	if (mode) {
		snprintf(mode_text, sizeof(mode_text), "%lo", mode);
		params[n++] = (struct fs_param){ "mode", mode_text };
	}
	if (size) {
		snprintf(size_text, sizeof(size_text), "%lu", size);
		params[n++] = (struct fs_param){ "size", size_text };
	}
	const struct new_fs fs = {
		.type = type,
		.params = params,
		.params_of = what,
		.create_step = "create filesystem",
		.subject = what,
		.attr = attr,
	};
	return new_fs_mount(&fs);
}
