/*
 * shifter-nshelper: the single-threaded root helper for the namespace and mount work Node
 * cannot do (Node is multithreaded). See native/README.md for the interface and the
 * invariants it enforces.
 *
 *   shifter-nshelper serve <daemon pid>
 *       Started once by shifterd; dies with it. fd 3: a SOCK_SEQPACKET control socket. Each
 *       request is one message; the helper forks one child per request, which answers on the
 *       reply socket that came with the request and exits:
 *       "attach-image <squashfs file>" + [reply] -> "loop=/dev/loopN" + [detached mount fd]
 *       "move-loop /dev/loopN\n<file it reads>\n<same-size file>" + [reply] -> "ok"
 *       "attach-local <uid> <gid> <groups|-> <dir>" + [reply] -> "dev=M:m ino=N" + [detached mount fd]
 *       "create-env" + [reply, spec memfd, image mount fd]
 *           -> "ok us=<microseconds it took>" + [user ns fd, mnt ns fd]
 *       "run-userhook" + [reply, body memfd, user ns fd, mnt ns fd] -> "ok" + the hook's log lines
 *
 * Failures: one structured reply without fds, see failure.h.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "blockdev.h"
#include "create-env.h"
#include "failure.h"
#include "local-root.h"
#include "userhook.h"

#define CONTROL_FD 3
#define REQUEST_TIMEOUT_S 120 /* a request stuck this long (a hung image source?) is killed */
#define MAX_REQUEST_FDS 4

/* In the forked child: one request, answered on its reply socket (fds[0]). */
static NORETURN void serve_request(const char *text, const int *fds, int nfds)
{
	if (close(CONTROL_FD) < 0)
		die(errno, "close: control socket");
	signal(SIGCHLD, SIG_DFL);
	if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0)
		die(errno, "prctl: PR_SET_PDEATHSIG");
	alarm(REQUEST_TIMEOUT_S);
	failure_reply_to(fds[0]);
	if (!strncmp(text, "attach-image ", 13) && nfds == 1)
		cmd_attach_image(text + 13);
	else if (!strncmp(text, "move-loop ", 10) && nfds == 1)
		cmd_move_loop(text + 10);
	else if (!strncmp(text, "attach-local ", 13) && nfds == 1)
		cmd_attach_local(text + 13);
	else if (!strcmp(text, "create-env") && nfds == 3)
		cmd_create_env(fds[1], fds[2]);
	else if (!strcmp(text, "run-userhook") && nfds == 4)
		cmd_run_userhook(fds[1], fds[2], fds[3]);
	else
		fail(FAILURE_SPEC, EINVAL, "unknown request: %s", text);
	exit(0);
}

static int serve(pid_t daemon)
{
	/* The daemon's death (even kill -9) takes this server with it: no orphan stays root. */
	if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0)
		die(errno, "prctl: PR_SET_PDEATHSIG");
	if (getppid() != daemon)
		return 0;
	/* Children are not waited for here: the kernel reaps them. */
	signal(SIGCHLD, SIG_IGN);
	for (;;) {
		char text[8192];
		struct fdio_received r = { .kept = 0 };
		ssize_t n = fdio_recv_fds(CONTROL_FD, text, sizeof(text) - 1, MAX_REQUEST_FDS, &r);
		if (n <= 0)
			return n < 0 ? 1 : 0; /* the daemon closed its end */
		text[n] = '\0';
		if (r.count == 0 || r.count > MAX_REQUEST_FDS || r.truncated) {
			fdio_close_received(&r);
			fprintf(stderr, "shifter-nshelper: serve: dropped a malformed request\n");
			continue;
		}
		pid_t pid = fork();
		if (pid == 0)
			serve_request(text, r.fds, r.kept);
		if (pid < 0) {
			char reply[256];
			failure_format(reply, sizeof(reply), failure_class_of(errno), errno, "fork");
			fdio_send_fds(r.fds[0], reply, strlen(reply), NULL, 0);
		}
		fdio_close_received(&r);
	}
}

int main(int argc, char **argv)
{
	if (argc == 3 && !strcmp(argv[1], "serve"))
		return serve((pid_t)atoi(argv[2]));
	fprintf(stderr, "usage: shifter-nshelper serve <daemon pid> (fd 3: control socket; see native/README.md)\n");
	return 2;
}
