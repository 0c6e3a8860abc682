/*
 * What the launcher and the helper both need from a socket or a pipe: whole writes and reads
 * that survive EINTR and short counts, and messages carrying fds (SCM_RIGHTS). Errors are
 * values (-1 and errno); each program decides how to report them.
 */
#ifndef SHIFTER_FDIO_H
#define SHIFTER_FDIO_H

#include <stddef.h>
#include <sys/types.h>

#define NORETURN __attribute__((noreturn))
#define PRINTF_LIKE(fmt, first) __attribute__((format(printf, fmt, first)))

/* Most fds one message carries in either program. */
#define FDIO_MAX_FDS 8

/* Writes all len bytes (send with MSG_NOSIGNAL on a socket). 0, or -1 with errno. */
int fdio_write_all(int fd, const void *buf, size_t len);

/* One read, retried on EINTR. */
ssize_t fdio_read(int fd, void *buf, size_t len);

/* One message of len bytes with nfds fds attached (none when nfds is 0), MSG_NOSIGNAL. */
int fdio_send_fds(int sock, const void *buf, size_t len, const int *fds, int nfds);

struct fdio_received {
	int fds[FDIO_MAX_FDS]; /* the first ones received, up to the caller's limit */
	int kept;              /* how many of fds[] are open */
	int count;             /* how many came in all; those past the limit were closed */
	int truncated;         /* the data or the fds did not fit (MSG_TRUNC, MSG_CTRUNC) */
};

/*
 * One recvmsg (retried on EINTR) with MSG_CMSG_CLOEXEC. The fds received are added to r, kept
 * up to max (at most FDIO_MAX_FDS) and closed beyond it, so calls can accumulate the fds of
 * several segments of a stream. Returns the bytes read, 0 at end of file, or -1 with errno.
 */
ssize_t fdio_recv_fds(int sock, void *buf, size_t len, int max, struct fdio_received *r);

/* Closes the fds r kept. */
void fdio_close_received(struct fdio_received *r);

#endif
