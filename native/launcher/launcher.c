/*
 * shifter: the per-rank launcher. Not setuid. It sends its argv/env/cwd to shifterd, receives
 * the user+mount namespace fds of a prepared environment and execs the command inside, in
 * place (same PID, signals, stdio and tty), so Slurm and MPI see the process they started.
 * Protocol: proto/launch-protocol.md.
 *
 * The daemon's socket: $SHIFTERD_SOCKET, else the shifterdSocket key of udiRoot.conf (at
 * $SHIFTER_UDIROOT_CONF, as shifterimg and shifterd read it, else the path compiled in, see
 * udiroot.h), else /run/shifter/shifterd.sock.
 *
 * shifterd parses the command line; the launcher keeps a copy of two answers so that they work
 * where no shifterd runs (a login node): `shifter --help` (the text shifterd gives, generated at
 * build time from node-daemon/command/options.ts into shifter-help.h) and `shifter --version`.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../common/launch-client.h"
#include "shifter-help.h"
#include "udiroot.h"

#ifndef SHIFTER_VERSION
#error "SHIFTER_VERSION is not defined: build with scripts/build-native.mjs"
#endif

#define DEFAULT_SOCKET "/run/shifter/shifterd.sock"

extern char **environ;

/* "shifter: <fmt...>[: strerror(err)]" and exit 1. */
static NORETURN PRINTF_LIKE(2, 3) void die(int err, const char *fmt, ...)
{
	char text[2048];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	if (err)
		fprintf(stderr, "shifter: %s: %s\n", text, strerror(err));
	else
		fprintf(stderr, "shifter: %s\n", text);
	exit(1);
}

static NORETURN void die_with(const struct launch_error *e)
{
	die(e->err, "%s", e->text);
}

/*
 * $SHIFTERD_SOCKET first (tests use it; shifterd identifies callers by SO_PEERCRED, so a user who
 * points their own launcher elsewhere fools only themselves), then shifterdSocket in udiRoot.conf
 * (found as shifterimg and shifterd find it), then the default.
 */
static const char *daemon_socket(char *buf, size_t len)
{
	const char *path = getenv("SHIFTERD_SOCKET");
	if (path && *path)
		return path;
	const char *conf = getenv("SHIFTER_UDIROOT_CONF");
	if (!conf || !*conf)
		conf = SHIFTER_DEFAULT_UDIROOT_CONF;
	int found = udiroot_shifterd_socket(conf, buf, len);
	if (found < 0)
		die(errno, "cannot read shifterdSocket from %s", conf);
	return found ? buf : DEFAULT_SOCKET;
}

/* The first argument asks for text shifterd would print: --help, -h or --version. */
static const char *builtin_answer(int argc, char **argv)
{
	if (argc < 2)
		return NULL;
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)
		return SHIFTER_HELP_TEXT;
	if (strcmp(argv[1], "--version") == 0)
		return "shifter-ts " SHIFTER_VERSION "\n";
	return NULL;
}

/* Where users go for help when shifterd is down: siteContact in udiRoot.conf, if it says. */
static const char *site_contact(char *buf, size_t len)
{
	const char *conf = getenv("SHIFTER_UDIROOT_CONF");
	if (!conf || !*conf)
		conf = SHIFTER_DEFAULT_UDIROOT_CONF;
	return udiroot_value(conf, "siteContact", buf, len) == 1 ? buf : NULL;
}

/* Nothing answered at the socket: one line saying so, and who to tell. */
static NORETURN void die_no_daemon(const char *path, int err)
{
	const char *state = err == ENOENT || err == ECONNREFUSED ? "is not running" : "cannot be reached";
	char contact[512];
	const char *who = site_contact(contact, sizeof(contact));
	if (who)
		die(0, "shifterd %s on this node (%s: %s); contact %s", state, path, strerror(err), who);
	die(0, "shifterd %s on this node (%s: %s); tell your site's support", state, path, strerror(err));
}

static const char *env_path(char **env)
{
	for (char **e = env; *e; e++)
		if (strncmp(*e, "PATH=", 5) == 0)
			return *e + 5;
	return "/usr/local/bin:/usr/bin:/bin";
}

/* execve in place; on failure exits with the code of a shell. */
static NORETURN void exec_command(char **argv, char **env)
{
	const char *cmd = argv[0];
	int saved = ENOENT;
	if (strchr(cmd, '/')) {
		execve(cmd, argv, env);
		saved = errno;
	} else if (*cmd) {
		const char *path = env_path(env);
		size_t cmdlen = strlen(cmd);
		char *full = malloc(strlen(path) + cmdlen + 2);
		if (!full)
			die(ENOMEM, "exec: out of memory");
		for (const char *p = path;; p++) {
			const char *colon = strchrnul(p, ':');
			size_t dirlen = (size_t)(colon - p);
			if (dirlen == 0)
				strcpy(full, cmd);
			else
				sprintf(full, "%.*s/%s", (int)dirlen, p, cmd);
			execve(full, argv, env);
			/* Like execvp: remember a permission error, keep looking past "not there". */
			if (errno == EACCES)
				saved = EACCES;
			else if (errno != ENOENT && errno != ENOTDIR && errno != ELOOP)
				saved = errno;
			if (*colon == '\0' || (saved != ENOENT && saved != EACCES))
				break;
			p = colon;
		}
		free(full);
	}
	if (saved == ENOENT || saved == ENOTDIR) {
		fprintf(stderr, "shifter: %s: command not found\n", cmd);
		exit(127);
	}
	fprintf(stderr, "shifter: %s: %s\n", cmd, strerror(saved));
	exit(126);
}

int main(int argc, char **argv)
{
	if (geteuid() != getuid() || getegid() != getgid())
		die(EPERM, "refusing to run: shifter must not be installed setuid or setgid");
	char configured[PATH_MAX];
	const char *path = daemon_socket(configured, sizeof(configured));
	char cwd[PATH_MAX];
	if (!getcwd(cwd, sizeof(cwd)))
		cwd[0] = '\0';
	struct launch_reply reply;
	struct launch_error e;
	if (launch_request(path, argv, environ, cwd, &reply, &e) < 0) {
		const char *answer = e.connect_err ? builtin_answer(argc, argv) : NULL;
		if (answer) {
			fputs(answer, stdout);
			exit(fflush(stdout) == 0 ? 0 : 1);
		}
		if (e.connect_err)
			die_no_daemon(path, e.connect_err);
		die_with(&e);
	}
	if (reply.kind == LAUNCH_REPLY_ERROR) {
		/* Exit code 0 carries text the user asked for (--help): it belongs on stdout. */
		FILE *out = reply.exit_code == 0 ? stdout : stderr;
		fwrite(reply.message, 1, reply.message_len, out);
		if (fflush(out) != 0)
			exit(1);
		exit(reply.exit_code);
	}
	char warning[PATH_MAX + 256];
	if (launch_enter(&reply, warning, sizeof(warning), &e) < 0)
		die_with(&e);
	if (*warning)
		fprintf(stderr, "shifter: %s\n", warning);
	if (*reply.notice)
		fputs(reply.notice, stderr);
	exec_command(reply.argv, reply.env);
}
