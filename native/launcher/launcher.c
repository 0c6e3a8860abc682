/*
 * shifter: the per-rank launcher. Not setuid. It sends its argv/env/cwd to shifterd, receives
 * the user+mount namespace fds of a prepared environment and execs the command inside, in
 * place (same PID, signals, stdio and tty), so Slurm and MPI see the process they started.
 * Protocol: proto/launch-protocol.md.
 *
 * The daemon's socket: $SHIFTERD_SOCKET, else the shifterdSocket key of udiRoot.conf (at
 * $SHIFTER_UDIROOT_CONF, as shifterimg and shifterd read it, else the path compiled in, see
 * udiroot.h), else /run/shifter/shifterd.sock.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/capability.h>
#include <linux/nsfs.h>
#include <sched.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "../common/fdio.h"
#include "udiroot.h"

#define MAX_BODY (4u * 1024 * 1024)
#define MAX_LIST 65536u
#define DEFAULT_SOCKET "/run/shifter/shifterd.sock"
/* Preparing an environment may mount a large image over a lazy FUSE fetch: be patient, not forever. */
#define REPLY_TIMEOUT_S 600
#define REPLY_TIMEOUT_TEXT "600 s"

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

struct buf {
	char *data;
	size_t len, cap;
};

static void buf_put(struct buf *b, const void *p, size_t n)
{
	if (b->len + n > MAX_BODY + 8)
		die(0, "request: argv and environment exceed 4 MiB");
	if (b->len + n > b->cap) {
		size_t cap = b->cap ? b->cap * 2 : 4096;
		while (cap < b->len + n)
			cap *= 2;
		b->data = realloc(b->data, cap);
		if (!b->data)
			die(ENOMEM, "request: out of memory");
		b->cap = cap;
	}
	memcpy(b->data + b->len, p, n);
	b->len += n;
}

static void buf_u32(struct buf *b, uint32_t v)
{
	unsigned char le[4] = { v & 0xff, (v >> 8) & 0xff, (v >> 16) & 0xff, (v >> 24) & 0xff };
	buf_put(b, le, 4);
}

static void buf_list(struct buf *b, char **items)
{
	uint32_t n = 0;
	while (items && items[n])
		n++;
	buf_u32(b, n);
	for (uint32_t i = 0; i < n; i++)
		buf_put(b, items[i], strlen(items[i]) + 1);
}

static uint32_t get_u32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
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

static int connect_daemon(const char *path)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	if (strlen(path) >= sizeof(addr.sun_path))
		die(0, "cannot connect to shifterd: socket path too long");
	strcpy(addr.sun_path, path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		die(errno, "socket: AF_UNIX");
	struct timeval tv = { .tv_sec = REPLY_TIMEOUT_S };
	if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0)
		die(errno, "setsockopt: SO_RCVTIMEO");
	if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
		fprintf(stderr, "shifter: cannot connect to shifterd at %s: %s (is shifterd running?)\n", path,
		        strerror(errno));
		exit(1);
	}
	return fd;
}

static void send_request(int fd, char **argv)
{
	struct buf b = { 0 };
	char cwd[PATH_MAX];
	if (!getcwd(cwd, sizeof(cwd)))
		cwd[0] = '\0';
	buf_put(&b, "SHL1\0\0\0\0", 8);
	buf_list(&b, argv);
	buf_list(&b, environ);
	buf_put(&b, cwd, strlen(cwd) + 1);
	uint32_t body = (uint32_t)(b.len - 8);
	if (body > MAX_BODY)
		die(0, "request: argv and environment exceed 4 MiB");
	unsigned char le[4] = { body & 0xff, (body >> 8) & 0xff, (body >> 16) & 0xff, (body >> 24) & 0xff };
	memcpy(b.data + 4, le, 4);
	if (fdio_write_all(fd, b.data, b.len) < 0)
		die(errno, "send request to shifterd: write");
	free(b.data);
}

/* Reads the whole reply; fds keeps the first 2 fds that came with it (count: how many came). */
static unsigned char *recv_reply(int fd, uint32_t *body_len, struct fdio_received *fds)
{
	unsigned char head[8];
	size_t got = 0;
	while (got < sizeof(head)) {
		ssize_t n = fdio_recv_fds(fd, head + got, sizeof(head) - got, 2, fds);
		if (n < 0 && errno == EAGAIN)
			die(0, "read reply from shifterd: no answer within " REPLY_TIMEOUT_TEXT);
		if (n < 0)
			die(errno, "read reply from shifterd: recvmsg");
		if (n == 0)
			die(0, "read reply from shifterd: connection closed before a reply");
		if (fds->truncated)
			die(0, "read reply from shifterd: too many file descriptors attached");
		got += (size_t)n;
	}
	if (memcmp(head, "SHR1", 4) != 0)
		die(0, "read reply from shifterd: bad magic (not a shifterd socket?)");
	*body_len = get_u32(head + 4);
	if (*body_len < 1 || *body_len > MAX_BODY)
		die(0, "read reply from shifterd: reply length out of range");
	unsigned char *body = malloc(*body_len);
	if (!body)
		die(ENOMEM, "read reply from shifterd: out of memory");
	for (got = 0; got < *body_len;) {
		ssize_t n = fdio_read(fd, body + got, *body_len - got);
		if (n < 0 && errno == EAGAIN)
			die(0, "read reply from shifterd: no answer within " REPLY_TIMEOUT_TEXT);
		if (n < 0)
			die(errno, "read reply from shifterd: recv");
		if (n == 0)
			die(0, "read reply from shifterd: truncated reply");
		got += (size_t)n;
	}
	return body;
}

struct cursor {
	const unsigned char *p, *end;
};

static uint32_t cur_u32(struct cursor *c)
{
	if (c->end - c->p < 4)
		die(0, "read reply from shifterd: truncated reply");
	uint32_t v = get_u32(c->p);
	c->p += 4;
	return v;
}

static char *cur_string(struct cursor *c)
{
	const unsigned char *nul = memchr(c->p, 0, (size_t)(c->end - c->p));
	if (!nul)
		die(0, "read reply from shifterd: string without terminator");
	char *s = (char *)c->p;
	c->p = nul + 1;
	return s;
}

static char **cur_list(struct cursor *c)
{
	uint32_t n = cur_u32(c);
	if (n > MAX_LIST || n > (size_t)(c->end - c->p))
		die(0, "read reply from shifterd: list count out of range");
	char **v = calloc((size_t)n + 1, sizeof(char *));
	if (!v)
		die(ENOMEM, "read reply from shifterd: out of memory");
	for (uint32_t i = 0; i < n; i++)
		v[i] = cur_string(c);
	return v;
}

static void check_ns(int fd, int want_type, const char *what)
{
	int type = ioctl(fd, NS_GET_NSTYPE);
	if (type < 0)
		die(errno, "check namespace fd: %s", what);
	if (type != want_type) {
		fprintf(stderr, "shifter: check namespace fd: expected a %s fd, got another kind\n", what);
		exit(1);
	}
}

static void enter_namespaces(int userfd, int mntfd)
{
	check_ns(userfd, CLONE_NEWUSER, "user namespace");
	uid_t owner;
	if (ioctl(userfd, NS_GET_OWNER_UID, &owner) < 0)
		die(errno, "check namespace fd: NS_GET_OWNER_UID");
	if (owner != getuid())
		die(EPERM, "check namespace fd: user namespace belongs to another user");
	check_ns(mntfd, CLONE_NEWNS, "mount namespace");
	if (setns(userfd, CLONE_NEWUSER) < 0)
		die(errno, "setns: user namespace");
	if (setns(mntfd, CLONE_NEWNS) < 0)
		die(errno, "setns: mount namespace");
	if (close(userfd) < 0 || close(mntfd) < 0)
		die(errno, "close: namespace fd");
}

/* Read on the host, before entering: the container may have no /proc. */
static int last_capability(void)
{
	int last = CAP_LAST_CAP;
	FILE *f = fopen("/proc/sys/kernel/cap_last_cap", "re");
	if (f) {
		if (fscanf(f, "%d", &last) != 1 || last < 0 || last >= 100)
			die(0, "drop capabilities: /proc/sys/kernel/cap_last_cap unreadable");
		if (fclose(f) != 0)
			die(errno, "close: /proc/sys/kernel/cap_last_cap");
	}
	return last;
}

static void drop_privileges(int last)
{
	for (int cap = 0; cap <= last; cap++)
		if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0)
			die(errno, "drop capabilities: PR_CAPBSET_DROP");
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0)
		die(errno, "drop capabilities: PR_CAP_AMBIENT_CLEAR_ALL");
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		die(errno, "drop capabilities: PR_SET_NO_NEW_PRIVS");
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
	(void)argc;
	if (geteuid() != getuid() || getegid() != getgid())
		die(EPERM, "refusing to run: shifter must not be installed setuid or setgid");
	char configured[PATH_MAX];
	const char *path = daemon_socket(configured, sizeof(configured));
	int sock = connect_daemon(path);
	send_request(sock, argv);
	uint32_t len;
	struct fdio_received fds = { .kept = 0 };
	unsigned char *body = recv_reply(sock, &len, &fds);
	if (close(sock) < 0)
		die(errno, "close: %s", path);
	struct cursor c = { body + 1, body + len };
	if (body[0] == 0) {
		fdio_close_received(&fds);
		if (len < 5)
			die(0, "read reply from shifterd: truncated error reply");
		int32_t code = (int32_t)cur_u32(&c);
		/* Exit code 0 carries text the user asked for (--help): it belongs on stdout. */
		FILE *out = code == 0 ? stdout : stderr;
		fwrite(c.p, 1, (size_t)(c.end - c.p), out);
		if (fflush(out) != 0)
			exit(1);
		exit(code >= 0 && code <= 255 ? code : 1);
	}
	if (body[0] != 1)
		die(0, "read reply from shifterd: unknown reply kind");
	if (fds.count != 2)
		die(0, "read reply from shifterd: exec reply without exactly 2 namespace fds");
	char **cargv = cur_list(&c);
	char **cenv = cur_list(&c);
	const char *cwd = cur_string(&c);
	const char *notice = cur_string(&c);
	if (c.p != c.end)
		die(0, "read reply from shifterd: trailing bytes in reply");
	if (!cargv[0])
		die(0, "read reply from shifterd: empty command");
	int last_cap = last_capability();
	enter_namespaces(fds.fds[0], fds.fds[1]);
	if (chdir(*cwd ? cwd : "/") < 0) {
		fprintf(stderr, "shifter: WARNING: cannot chdir to %s: %s, staying in /\n", cwd, strerror(errno));
		if (chdir("/") < 0)
			die(errno, "chdir: /");
	}
	drop_privileges(last_cap);
	if (*notice)
		fputs(notice, stderr);
	exec_command(cargv, cenv);
}
