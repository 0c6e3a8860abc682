#define _GNU_SOURCE
#include "hook.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "failure.h"

#define STDERR_LINES_SHOWN 3

static char log_buf[HOOK_LOG_MAX];
static size_t log_len;

const char *hook_log(void)
{
	log_buf[log_len] = '\0';
	return log_buf;
}

/* One of the hook's output streams: split into log lines, the end kept for the failure message. */
struct stream {
	int fd;
	const char *label;
	char line[512];
	size_t linelen;
	char tail[HOOK_TAIL];
	size_t taillen;
};

static void log_line(const char *name, const struct stream *s)
{
	static const char cut[] = "(more hook output was not kept)\n";
	if (log_len + sizeof(cut) >= sizeof(log_buf))
		return;
	size_t room = sizeof(log_buf) - sizeof(cut) - log_len;
	int n = snprintf(log_buf + log_len, room, "%s %s: %.*s\n", name, s->label, (int)s->linelen, s->line);
	if (n < 0 || (size_t)n >= room) {
		memcpy(log_buf + log_len, cut, sizeof(cut) - 1);
		log_len = sizeof(log_buf) - 1;
		return;
	}
	log_len += (size_t)n;
}

static void take(const char *name, struct stream *s, const char *buf, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		char c = buf[i];
		if (c == '\n' || s->linelen == sizeof(s->line)) {
			log_line(name, s);
			s->linelen = 0;
			if (c == '\n')
				continue;
		}
		/* One line per log entry: control characters would forge or garble lines. */
		s->line[s->linelen++] = (c == '\t' || (unsigned char)c >= 0x20) ? c : '?';
	}
	if (s->taillen + n > sizeof(s->tail)) {
		size_t keep = n >= sizeof(s->tail) ? 0 : sizeof(s->tail) - n;
		if (keep > s->taillen)
			keep = s->taillen;
		memmove(s->tail, s->tail + s->taillen - keep, keep);
		s->taillen = keep;
		if (n > sizeof(s->tail)) {
			buf += n - sizeof(s->tail);
			n = sizeof(s->tail);
		}
	}
	memcpy(s->tail + s->taillen, buf, n);
	s->taillen += n;
}

/* Reads what is there now; returns 0 at end of stream. */
static int drain(const char *name, struct stream *s)
{
	char buf[4096];
	ssize_t n = read(s->fd, buf, sizeof(buf));
	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return 1;
	if (n <= 0) {
		if (s->linelen > 0)
			log_line(name, s);
		s->linelen = 0;
		close(s->fd);
		s->fd = -1;
		return 0;
	}
	take(name, s, buf, (size_t)n);
	return 1;
}

/* The last few non-empty stderr lines, " | "-joined, as " (last stderr lines: ...)"; "" when none. */
static void last_lines(const struct stream *s, char *out, size_t len)
{
	char text[HOOK_TAIL + 1];
	memcpy(text, s->tail, s->taillen);
	text[s->taillen] = '\0';
	const char *lines[STDERR_LINES_SHOWN];
	int count = 0;
	for (char *save = NULL, *l = strtok_r(text, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
		for (char *c = l; *c; c++)
			if ((unsigned char)*c < 0x20)
				*c = ' ';
		if (count == STDERR_LINES_SHOWN)
			memmove(lines, lines + 1, sizeof(lines[0]) * (STDERR_LINES_SHOWN - 1));
		lines[count == STDERR_LINES_SHOWN ? count - 1 : count++] = l;
	}
	out[0] = '\0';
	if (count == 0)
		return;
	size_t used = (size_t)snprintf(out, len, " (last stderr lines: ");
	for (int i = 0; i < count && used < len; i++)
		used += (size_t)snprintf(out + used, len - used, "%s%s", i ? " | " : "", lines[i]);
	if (used < len)
		snprintf(out + used, len - used, ")");
}

static long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

static NORETURN void exec_hook(const struct hook_run *h, int out, int err)
{
	/* No stray process may outlive the helper (a killed helper kills a hung hook). */
	prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	signal(SIGPIPE, SIG_DFL);
	signal(SIGCHLD, SIG_DFL);
	signal(SIGALRM, SIG_DFL);
	/* Its own process group, so the limit ends whatever it started too. */
	setpgid(0, 0);
	int null = open("/dev/null", O_RDONLY);
	if (null < 0 || dup2(null, 0) < 0 || dup2(out, 1) < 0 || dup2(err, 2) < 0)
		_exit(126);
	if (h->cwdfd >= 0 && fchdir(h->cwdfd) < 0) {
		dprintf(2, "cannot enter the container root: %s\n", strerror(errno));
		_exit(126);
	}
	if (h->enter)
		h->enter(h->enter_arg);
	if (close_range(3, ~0U, 0) < 0)
		_exit(126);
	const char *argv[] = { "/bin/sh", h->script, NULL };
	execve(argv[0], (char *const *)argv, h->env);
	dprintf(2, "cannot run /bin/sh %s: %s\n", h->script, strerror(errno));
	_exit(127);
}

/* Reads both streams until the hook exits (or the limit); returns its wait status, -1 at the limit. */
static int watch(const struct hook_run *h, pid_t pid, struct stream *streams)
{
	/* Its exit wakes poll() like its output does: no polling interval adds to a launch. */
	int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (pidfd < 0)
		die(errno, "pidfd_open: %s", h->name);
	long deadline = now_ms() + (long)h->limit_s * 1000L, exited_at = 0;
	int status = 0, exited = 0;
	for (;;) {
		struct pollfd p[3];
		struct stream *of[3];
		nfds_t n = 0;
		if (!exited) {
			of[n] = NULL;
			p[n++] = (struct pollfd){ .fd = pidfd, .events = POLLIN };
		}
		for (int i = 0; i < 2; i++)
			if (streams[i].fd >= 0) {
				of[n] = &streams[i];
				p[n++] = (struct pollfd){ .fd = streams[i].fd, .events = POLLIN };
			}
		/* A process that left its group may hold the pipes: its output is not waited for. */
		if (exited && (n == 0 || now_ms() - exited_at > 1000))
			break;
		long left = deadline - now_ms();
		if (!exited && left <= 0) {
			kill(-pid, SIGKILL);
			while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
				;
			status = -1;
			break;
		}
		int ready = poll(p, n, exited ? 100 : (int)(left > 60000 ? 60000 : left));
		if (ready < 0 && errno != EINTR)
			die(errno, "poll: %s", h->name);
		for (nfds_t i = 0; ready > 0 && i < n; i++) {
			if (!p[i].revents)
				continue;
			if (of[i]) {
				drain(h->name, of[i]);
				continue;
			}
			while (waitpid(pid, &status, 0) < 0)
				if (errno != EINTR)
					die(errno, "waitpid: %s", h->name);
			exited = 1;
			exited_at = now_ms();
			/* What it left running would hold the pipes open: it goes with it. */
			kill(-pid, SIGKILL);
		}
	}
	close(pidfd);
	return status;
}

void run_module_hook(const struct hook_run *h)
{
	/* The request's own time limit (main.c) grows by the hook's. */
	alarm(alarm(0) + h->limit_s);
	int out[2], err[2];
	if (pipe2(out, O_CLOEXEC) < 0 || pipe2(err, O_CLOEXEC) < 0)
		die(errno, "pipe2: %s", h->name);
	pid_t pid = fork();
	if (pid < 0)
		die(errno, "fork: %s", h->name);
	if (pid == 0)
		exec_hook(h, out[1], err[1]);
	setpgid(pid, pid);
	if (close(out[1]) < 0 || close(err[1]) < 0)
		die(errno, "close: %s output", h->name);
	if (fcntl(out[0], F_SETFL, O_NONBLOCK) < 0 || fcntl(err[0], F_SETFL, O_NONBLOCK) < 0)
		die(errno, "fcntl: %s output", h->name);
	struct stream streams[2] = { { .fd = out[0], .label = "stdout" }, { .fd = err[0], .label = "stderr" } };
	int status = watch(h, pid, streams);
	for (int i = 0; i < 2; i++)
		if (streams[i].fd >= 0)
			close(streams[i].fd);
	if (status >= 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return;
	char lines[HOOK_TAIL + 64];
	last_lines(&streams[1], lines, sizeof(lines));
	if (status < 0)
		fail_hook(HOOK_TIMED_OUT,
		          "%s %s: did not finish within %u s and was killed (moduleHookTimeout in udiRoot.conf)%s",
		          h->name, h->script, h->limit_s, lines);
	if (WIFEXITED(status))
		fail_hook(WEXITSTATUS(status), "%s %s: exited with status %d%s", h->name, h->script,
		          WEXITSTATUS(status), lines);
	fail_hook(128 + WTERMSIG(status), "%s %s: was killed by signal %d%s", h->name, h->script, WTERMSIG(status),
	          lines);
}
