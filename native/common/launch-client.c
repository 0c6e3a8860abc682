#define _GNU_SOURCE
#include "launch-client.h"

#include <errno.h>
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
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#define MAX_BODY (4u * 1024 * 1024)
#define MAX_LIST 65536u
/* Preparing an environment may mount a large image over a lazy FUSE fetch: be patient, not forever. */
#define REPLY_TIMEOUT_S 600
#define REPLY_TIMEOUT_TEXT "600 s"

static PRINTF_LIKE(3, 4) int fail(struct launch_error *e, int err, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(e->text, sizeof(e->text), fmt, ap);
	va_end(ap);
	e->err = err;
	e->connect_err = 0;
	return -1;
}

struct buf {
	char *data;
	size_t len, cap;
	int failed; /* 1: out of memory, 2: over the protocol's limit */
};

static void buf_put(struct buf *b, const void *p, size_t n)
{
	if (b->failed)
		return;
	if (b->len + n > MAX_BODY + 8) {
		b->failed = 2;
		return;
	}
	if (b->len + n > b->cap) {
		size_t cap = b->cap ? b->cap * 2 : 4096;
		while (cap < b->len + n)
			cap *= 2;
		char *grown = realloc(b->data, cap);
		if (!grown) {
			b->failed = 1;
			return;
		}
		b->data = grown;
		b->cap = cap;
	}
	memcpy(b->data + b->len, p, n);
	b->len += n;
}

static void put_u32_le(unsigned char *le, uint32_t v)
{
	le[0] = v & 0xff;
	le[1] = (v >> 8) & 0xff;
	le[2] = (v >> 16) & 0xff;
	le[3] = (v >> 24) & 0xff;
}

static void buf_u32(struct buf *b, uint32_t v)
{
	unsigned char le[4];
	put_u32_le(le, v);
	buf_put(b, le, 4);
}

static void buf_list(struct buf *b, char *const *items)
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

static int connect_daemon(const char *path, struct launch_error *e)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	if (strlen(path) >= sizeof(addr.sun_path))
		return fail(e, 0, "cannot connect to shifterd: socket path too long");
	strcpy(addr.sun_path, path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return fail(e, errno, "socket: AF_UNIX");
	struct timeval tv = { .tv_sec = REPLY_TIMEOUT_S };
	if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0) {
		int err = errno;
		close(fd);
		return fail(e, err, "setsockopt: SO_RCVTIMEO");
	}
	if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
		int err = errno;
		close(fd);
		fail(e, 0, "cannot connect to shifterd at %s: %s (is shifterd running?)", path, strerror(err));
		e->connect_err = err;
		return -1;
	}
	return fd;
}

static int send_request(int fd, char *const argv[], char *const env[], const char *cwd, struct launch_error *e)
{
	struct buf b = { 0 };
	buf_put(&b, "SHL1\0\0\0\0", 8);
	buf_list(&b, argv);
	buf_list(&b, env);
	buf_put(&b, cwd, strlen(cwd) + 1);
	int rc = 0;
	if (b.failed == 1) {
		rc = fail(e, ENOMEM, "request: out of memory");
	} else if (b.failed == 2) {
		rc = fail(e, 0, "request: argv and environment exceed 4 MiB");
	} else {
		put_u32_le((unsigned char *)b.data + 4, (uint32_t)(b.len - 8));
		if (fdio_write_all(fd, b.data, b.len) < 0)
			rc = fail(e, errno, "send request to shifterd: write");
	}
	free(b.data);
	return rc;
}

/* Reads the whole reply into reply->body; fds keeps the first 2 fds that came with it. */
static int recv_reply(int fd, uint32_t *body_len, struct launch_reply *reply, struct fdio_received *fds,
                      struct launch_error *e)
{
	unsigned char head[8];
	size_t got = 0;
	while (got < sizeof(head)) {
		ssize_t n = fdio_recv_fds(fd, head + got, sizeof(head) - got, 2, fds);
		if (n < 0 && errno == EAGAIN)
			return fail(e, 0, "read reply from shifterd: no answer within " REPLY_TIMEOUT_TEXT);
		if (n < 0)
			return fail(e, errno, "read reply from shifterd: recvmsg");
		if (n == 0)
			return fail(e, 0, "read reply from shifterd: connection closed before a reply");
		if (fds->truncated)
			return fail(e, 0, "read reply from shifterd: too many file descriptors attached");
		got += (size_t)n;
	}
	if (memcmp(head, "SHR1", 4) != 0)
		return fail(e, 0, "read reply from shifterd: bad magic (not a shifterd socket?)");
	*body_len = get_u32(head + 4);
	if (*body_len < 1 || *body_len > MAX_BODY)
		return fail(e, 0, "read reply from shifterd: reply length out of range");
	reply->body = malloc(*body_len);
	if (!reply->body)
		return fail(e, ENOMEM, "read reply from shifterd: out of memory");
	for (got = 0; got < *body_len;) {
		ssize_t n = fdio_read(fd, reply->body + got, *body_len - got);
		if (n < 0 && errno == EAGAIN)
			return fail(e, 0, "read reply from shifterd: no answer within " REPLY_TIMEOUT_TEXT);
		if (n < 0)
			return fail(e, errno, "read reply from shifterd: recv");
		if (n == 0)
			return fail(e, 0, "read reply from shifterd: truncated reply");
		got += (size_t)n;
	}
	return 0;
}

struct cursor {
	const unsigned char *p, *end;
	int bad; /* the first problem found; later reads return empty values */
	const char *problem;
};

static void cur_fail(struct cursor *c, const char *problem)
{
	if (!c->bad) {
		c->bad = 1;
		c->problem = problem;
	}
	c->p = c->end;
}

static uint32_t cur_u32(struct cursor *c)
{
	if (c->end - c->p < 4) {
		cur_fail(c, "truncated reply");
		return 0;
	}
	uint32_t v = get_u32(c->p);
	c->p += 4;
	return v;
}

static const char *cur_string(struct cursor *c)
{
	const unsigned char *nul = c->p < c->end ? memchr(c->p, 0, (size_t)(c->end - c->p)) : NULL;
	if (!nul) {
		cur_fail(c, "string without terminator");
		return "";
	}
	const char *s = (const char *)c->p;
	c->p = nul + 1;
	return s;
}

static char **cur_list(struct cursor *c)
{
	uint32_t n = cur_u32(c);
	if (n > MAX_LIST || n > (size_t)(c->end - c->p)) {
		cur_fail(c, "list count out of range");
		n = 0;
	}
	char **v = calloc((size_t)n + 1, sizeof(char *));
	if (!v) {
		cur_fail(c, "out of memory");
		return NULL;
	}
	for (uint32_t i = 0; i < n; i++)
		v[i] = (char *)cur_string(c);
	return v;
}

static int parse_reply(struct launch_reply *r, uint32_t len, struct fdio_received *fds, struct launch_error *e)
{
	struct cursor c = { r->body + 1, r->body + len, 0, NULL };
	if (r->body[0] == LAUNCH_REPLY_ERROR) {
		if (len < 5)
			return fail(e, 0, "read reply from shifterd: truncated error reply");
		int32_t code = (int32_t)cur_u32(&c);
		r->kind = LAUNCH_REPLY_ERROR;
		r->exit_code = code >= 0 && code <= 255 ? code : 1;
		r->message = (const char *)c.p;
		r->message_len = (size_t)(c.end - c.p);
		return 0;
	}
	if (r->body[0] != LAUNCH_REPLY_EXEC)
		return fail(e, 0, "read reply from shifterd: unknown reply kind");
	if (fds->count != 2)
		return fail(e, 0, "read reply from shifterd: exec reply without exactly 2 namespace fds");
	r->kind = LAUNCH_REPLY_EXEC;
	r->argv = cur_list(&c);
	r->env = cur_list(&c);
	r->cwd = cur_string(&c);
	r->notice = cur_string(&c);
	if (c.bad)
		return fail(e, 0, "read reply from shifterd: %s", c.problem);
	if (c.p != c.end)
		return fail(e, 0, "read reply from shifterd: trailing bytes in reply");
	if (!r->argv[0])
		return fail(e, 0, "read reply from shifterd: empty command");
	r->userns_fd = fds->fds[0];
	r->mntns_fd = fds->fds[1];
	fds->kept = 0;
	return 0;
}

int launch_request(const char *path, char *const argv[], char *const env[], const char *cwd, struct launch_reply *reply,
                   struct launch_error *e)
{
	*reply = (struct launch_reply){ .userns_fd = -1, .mntns_fd = -1 };
	int sock = connect_daemon(path, e);
	if (sock < 0)
		return -1;
	struct fdio_received fds = { .kept = 0 };
	uint32_t len = 0;
	int rc = send_request(sock, argv, env, cwd, e);
	if (rc == 0)
		rc = recv_reply(sock, &len, reply, &fds, e);
	if (rc == 0)
		rc = parse_reply(reply, len, &fds, e);
	fdio_close_received(&fds);
	if (close(sock) < 0 && rc == 0)
		rc = fail(e, errno, "close: %s", path);
	if (rc != 0)
		launch_reply_free(reply);
	return rc;
}

static int check_ns(int fd, int want_type, const char *what, struct launch_error *e)
{
	int type = ioctl(fd, NS_GET_NSTYPE);
	if (type < 0)
		return fail(e, errno, "check namespace fd: %s", what);
	if (type != want_type)
		return fail(e, 0, "check namespace fd: expected a %s fd, got another kind", what);
	return 0;
}

static int enter_namespaces(int userfd, int mntfd, struct launch_error *e)
{
	if (check_ns(userfd, CLONE_NEWUSER, "user namespace", e) < 0)
		return -1;
	uid_t owner;
	if (ioctl(userfd, NS_GET_OWNER_UID, &owner) < 0)
		return fail(e, errno, "check namespace fd: NS_GET_OWNER_UID");
	if (owner != getuid())
		return fail(e, EPERM, "check namespace fd: user namespace belongs to another user");
	if (check_ns(mntfd, CLONE_NEWNS, "mount namespace", e) < 0)
		return -1;
	if (setns(userfd, CLONE_NEWUSER) < 0)
		return fail(e, errno, "setns: user namespace");
	if (setns(mntfd, CLONE_NEWNS) < 0)
		return fail(e, errno, "setns: mount namespace");
	return 0;
}

/* Read on the host, before entering: the container may have no /proc. */
static int last_capability(struct launch_error *e)
{
	int last = CAP_LAST_CAP;
	FILE *f = fopen("/proc/sys/kernel/cap_last_cap", "re");
	if (f) {
		int ok = fscanf(f, "%d", &last) == 1 && last >= 0 && last < 100;
		if (fclose(f) != 0)
			return fail(e, errno, "close: /proc/sys/kernel/cap_last_cap");
		if (!ok)
			return fail(e, 0, "drop capabilities: /proc/sys/kernel/cap_last_cap unreadable");
	}
	return last;
}

static int drop_privileges(int last, struct launch_error *e)
{
	for (int cap = 0; cap <= last; cap++)
		if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0)
			return fail(e, errno, "drop capabilities: PR_CAPBSET_DROP");
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0)
		return fail(e, errno, "drop capabilities: PR_CAP_AMBIENT_CLEAR_ALL");
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		return fail(e, errno, "drop capabilities: PR_SET_NO_NEW_PRIVS");
	return 0;
}

int launch_enter(struct launch_reply *r, char *warning, size_t warning_len, struct launch_error *e)
{
	warning[0] = '\0';
	if (r->kind != LAUNCH_REPLY_EXEC)
		return fail(e, 0, "enter: not an exec reply");
	int last_cap = last_capability(e);
	if (last_cap < 0)
		return -1;
	if (enter_namespaces(r->userns_fd, r->mntns_fd, e) < 0)
		return -1;
	int closed = close(r->userns_fd) == 0 && close(r->mntns_fd) == 0;
	r->userns_fd = r->mntns_fd = -1;
	if (!closed)
		return fail(e, errno, "close: namespace fd");
	if (chdir(*r->cwd ? r->cwd : "/") < 0) {
		snprintf(warning, warning_len, "WARNING: cannot chdir to %s: %s, staying in /", r->cwd,
		         strerror(errno));
		if (chdir("/") < 0)
			return fail(e, errno, "chdir: /");
	}
	return drop_privileges(last_cap, e);
}

void launch_reply_free(struct launch_reply *r)
{
	if (r->userns_fd >= 0)
		close(r->userns_fd);
	if (r->mntns_fd >= 0)
		close(r->mntns_fd);
	free(r->argv);
	free(r->env);
	free(r->body);
	*r = (struct launch_reply){ .userns_fd = -1, .mntns_fd = -1 };
}
