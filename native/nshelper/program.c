#define _GNU_SOURCE
#include "program.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "failure.h"

/* Copies a line, cut to fit (a long line is still better than none in an error message). */
static void keep_line(char *dst, size_t len, const char *line)
{
	size_t n = strnlen(line, len - 1);
	memcpy(dst, line, n);
	dst[n] = '\0';
}

/* "exited with status 3" / "was killed by signal 9", plus the last stderr line if any. */
static void describe_failure(int status, const char *last, char *out, size_t len)
{
	int n = WIFEXITED(status) ? snprintf(out, len, "exited with status %d", WEXITSTATUS(status))
	                          : snprintf(out, len, "was killed by signal %d", WTERMSIG(status));
	if (last[0] && n > 0 && (size_t)n < len)
		snprintf(out + n, len - (size_t)n, " (last stderr line: %s)", last);
}

/* The program's stderr until it closes; the last non-empty line lands in last. */
static void last_line_of(int fd, char *last, size_t lastlen)
{
	char buf[4096];
	size_t fill = 0;
	last[0] = '\0';
	for (;;) {
		ssize_t n = fdio_read(fd, buf + fill, sizeof(buf) - 1 - fill);
		if (n <= 0)
			break;
		fill += (size_t)n;
		buf[fill] = '\0';
		/* Keep complete lines' last one; drop what is before it so the buffer never fills. */
		char *nl;
		while ((nl = strchr(buf, '\n')) != NULL) {
			*nl = '\0';
			if (buf[0])
				keep_line(last, lastlen, buf);
			memmove(buf, nl + 1, fill - (size_t)(nl + 1 - buf) + 1);
			fill -= (size_t)(nl + 1 - buf);
		}
		if (fill == sizeof(buf) - 1)
			fill = 0;
	}
	if (fill > 0 && buf[0])
		keep_line(last, lastlen, buf);
}

int run_program(const char *const argv[], int cwdfd, char *why, size_t whylen)
{
	int errpipe[2];
	if (pipe2(errpipe, O_CLOEXEC) < 0)
		die(errno, "pipe2: %s", argv[0]);
	pid_t pid = fork();
	if (pid < 0)
		die(errno, "fork: %s", argv[0]);
	if (pid == 0) {
		/* No stray process may outlive the helper (a killed helper kills a hung hook). */
		prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
		sigset_t none;
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		signal(SIGPIPE, SIG_DFL);
		signal(SIGCHLD, SIG_DFL);
		int null = open("/dev/null", O_RDWR);
		if (null < 0 || dup2(null, 0) < 0 || dup2(null, 1) < 0 || dup2(errpipe[1], 2) < 0)
			_exit(126);
		if (cwdfd >= 0 && fchdir(cwdfd) < 0) {
			dprintf(2, "cannot enter the container root: %s\n", strerror(errno));
			_exit(126);
		}
		if (close_range(3, ~0U, 0) < 0)
			_exit(126);
		char *const env[] = { CLEAN_PATH, NULL };
		execve(argv[0], (char *const *)argv, env);
		dprintf(2, "cannot run %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	if (close(errpipe[1]) < 0)
		die(errno, "close: stderr pipe");
	char last[512];
	last_line_of(errpipe[0], last, sizeof(last));
	if (close(errpipe[0]) < 0)
		die(errno, "close: stderr pipe");
	int status;
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			die(errno, "waitpid: %s", argv[0]);
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return 0;
	describe_failure(status, last, why, whylen);
	return -1;
}
