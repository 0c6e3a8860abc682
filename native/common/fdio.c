#define _GNU_SOURCE
#include "fdio.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

int fdio_write_all(int fd, const void *buf, size_t len)
{
	struct stat st;
	int sock = fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode);
	const char *p = buf;
	while (len > 0) {
		ssize_t n = sock ? send(fd, p, len, MSG_NOSIGNAL) : write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		if (n == 0) {
			errno = EIO;
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

ssize_t fdio_read(int fd, void *buf, size_t len)
{
	for (;;) {
		ssize_t n = read(fd, buf, len);
		if (n >= 0 || errno != EINTR)
			return n;
	}
}

int fdio_send_fds(int sock, const void *buf, size_t len, const int *fds, int nfds)
{
	union {
		struct cmsghdr h;
		char space[CMSG_SPACE(sizeof(int) * FDIO_MAX_FDS)];
	} ctl;
	if (nfds < 0 || nfds > FDIO_MAX_FDS) {
		errno = EINVAL;
		return -1;
	}
	memset(&ctl, 0, sizeof(ctl));
	struct iovec iov = { (void *)buf, len };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
	if (nfds > 0) {
		msg.msg_control = ctl.space;
		msg.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nfds);
		struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nfds);
		memcpy(CMSG_DATA(c), fds, sizeof(int) * (size_t)nfds);
	}
	for (;;) {
		ssize_t n = sendmsg(sock, &msg, MSG_NOSIGNAL);
		if (n >= 0)
			return 0;
		if (errno != EINTR)
			return -1;
	}
}

ssize_t fdio_recv_fds(int sock, void *buf, size_t len, int max, struct fdio_received *r)
{
	union {
		struct cmsghdr h;
		char space[CMSG_SPACE(sizeof(int) * FDIO_MAX_FDS)];
	} ctl;
	if (max > FDIO_MAX_FDS)
		max = FDIO_MAX_FDS;
	struct iovec iov = { buf, len };
	struct msghdr msg = {
		.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.space, .msg_controllen = sizeof(ctl.space)
	};
	ssize_t n;
	do
		n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -1;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < count; i++) {
			int fd;
			memcpy(&fd, CMSG_DATA(c) + sizeof(int) * i, sizeof(int));
			if (r->kept < max)
				r->fds[r->kept++] = fd;
			else
				close(fd);
			r->count++;
		}
	}
	if (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC))
		r->truncated = 1;
	return n;
}

void fdio_close_received(struct fdio_received *r)
{
	for (int i = 0; i < r->kept; i++)
		close(r->fds[i]);
	r->kept = 0;
}
