#define _GNU_SOURCE
#include "handover.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "failure.h"

static void write_proc(int procfd, pid_t pid, const char *file, const char *text)
{
	char path[64];
	snprintf(path, sizeof(path), "%d/%s", pid, file);
	int fd = openat(procfd, path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		die(errno, "open /proc: %s", path);
	if (write(fd, text, strlen(text)) != (ssize_t)strlen(text))
		die(errno, "write /proc: %s", path);
	if (close(fd) < 0)
		die(errno, "close /proc: %s", path);
}

/* The child becomes the user and copies the mount namespace into its own user namespace. */
static NORETURN void become_user(const struct spec *s, int procfd, int image_fd, int ready_w, int go_r)
{
	failure_report_to(ready_w);
	if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0)
		die(errno, "prctl: PR_SET_PDEATHSIG");
	/* Nothing of root's (reply socket, image mount, host /proc) stays open as the user. */
	int reply = failure_take_reply();
	if (close(reply) < 0 || close(image_fd) < 0 || close(procfd) < 0)
		die(errno, "close: root fds before becoming the user");
	if (setgroups((size_t)s->ngroups, s->groups) < 0)
		die(errno, "setgroups: user groups");
	if (setresgid(s->gid, s->gid, s->gid) < 0)
		die(errno, "setresgid: user gid");
	if (setresuid(s->uid, s->uid, s->uid) < 0)
		die(errno, "setresuid: user uid");
	/* The copy made here marks every mount MNT_LOCKED: the user cannot undo any of them. */
	if (unshare(CLONE_NEWUSER | CLONE_NEWNS) < 0)
		die(errno, "unshare: CLONE_NEWUSER|CLONE_NEWNS");
	if (fdio_write_all(ready_w, "r", 1) < 0)
		die(errno, "write: ready pipe");
	char c;
	if (fdio_read(go_r, &c, 1) < 0)
		die(errno, "read: go pipe");
	_exit(0);
}

static int cmp_gid(const void *a, const void *b)
{
	gid_t x = *(const gid_t *)a, y = *(const gid_t *)b;
	return x < y ? -1 : x > y;
}

static void map_user(const struct spec *s, int procfd, pid_t pid)
{
	char line[64];
	write_proc(procfd, pid, "setgroups", "deny");
	snprintf(line, sizeof(line), "%u %u 1\n", s->uid, s->uid);
	write_proc(procfd, pid, "uid_map", line);
	gid_t sorted[MAX_GROUPS];
	memcpy(sorted, s->groups, sizeof(gid_t) * (size_t)s->ngroups);
	qsort(sorted, (size_t)s->ngroups, sizeof(gid_t), cmp_gid);
	char *map = malloc((size_t)s->ngroups * 40 + 1);
	if (!map)
		die(ENOMEM, "gid_map: out of memory");
	size_t off = 0;
	for (int i = 0; i < s->ngroups; i++) {
		if (sorted[i] == 0 || (i > 0 && sorted[i] == sorted[i - 1]))
			continue;
		off += (size_t)sprintf(map + off, "%u %u 1\n", sorted[i], sorted[i]);
	}
	write_proc(procfd, pid, "gid_map", map);
	free(map);
}

static int open_ns(int procfd, pid_t pid, const char *ns)
{
	char path[64];
	snprintf(path, sizeof(path), "%d/ns/%s", pid, ns);
	int fd = openat(procfd, path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		die(errno, "open namespace: %s", path);
	return fd;
}

void hand_over(const struct spec *s, int procfd, int image_fd, int fds[2])
{
	int ready[2], go[2];
	if (pipe2(ready, O_CLOEXEC) < 0 || pipe2(go, O_CLOEXEC) < 0)
		die(errno, "pipe2: user handover");
	pid_t pid = fork();
	if (pid < 0)
		die(errno, "fork: user handover");
	if (pid == 0) {
		close(ready[0]);
		close(go[1]);
		become_user(s, procfd, image_fd, ready[1], go[0]);
	}
	if (close(ready[1]) < 0 || close(go[0]) < 0)
		die(errno, "close: pipes");
	char said[4200];
	ssize_t n = fdio_read(ready[0], said, sizeof(said) - 1);
	if (n != 1 || said[0] != 'r') {
		int status;
		waitpid(pid, &status, 0);
		if (n > 1) {
			said[n] = '\0';
			fail_forward(said);
		}
		die(n < 0 ? errno : 0, "user handover: the child failed");
	}
	map_user(s, procfd, pid);
	fds[0] = open_ns(procfd, pid, "user");
	fds[1] = open_ns(procfd, pid, "mnt");
	if (close(go[1]) < 0)
		die(errno, "close: go pipe");
	int status;
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			die(errno, "waitpid: user handover");
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		die(0, "user handover: the child failed");
}
