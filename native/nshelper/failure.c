#define _GNU_SOURCE
#include "failure.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const char *const failure_class_names[] = { "system", "denied", "missing", "unsafe", "spec", "program", "hook" };
_Static_assert(sizeof(failure_class_names) / sizeof(failure_class_names[0]) == FAILURE_HOOK + 1,
               "one wire name per failure class");

/* The one piece of process-wide state: a failure deep in any unit must reach the right place. */
static struct {
	int reply_fd;
	int report_fd;
	char remove[4096];
} sink = { .reply_fd = -1, .report_fd = -1 };

void failure_reply_to(int reply_fd)
{
	sink.reply_fd = reply_fd;
}

int failure_take_reply(void)
{
	int fd = sink.reply_fd;
	sink.reply_fd = -1;
	return fd;
}

void failure_report_to(int pipe_fd)
{
	sink.report_fd = pipe_fd;
}

void failure_remove_on_failure(const char *path)
{
	snprintf(sink.remove, sizeof(sink.remove), "%s", path ? path : "");
}

enum failure_class failure_class_of(int err)
{
	if (err == EACCES || err == EPERM)
		return FAILURE_DENIED;
	if (err == ENOENT)
		return FAILURE_MISSING;
	return FAILURE_SYSTEM;
}

void failure_format(char *out, size_t len, enum failure_class cls, int err, const char *text)
{
	if (err)
		snprintf(out, len, "error %d %s shifter-nshelper: %s: %s", err, failure_class_names[cls], text,
		         strerror(err));
	else
		snprintf(out, len, "error 0 %s shifter-nshelper: %s", failure_class_names[cls], text);
}

/* Sends the reply where failures go; line is what stderr gets when there is nowhere else. */
static NORETURN void deliver(const char *reply, const char *line)
{
	if (sink.remove[0])
		unlink(sink.remove);
	int fd = sink.reply_fd;
	sink.reply_fd = -1;
	if (fd >= 0 && fdio_send_fds(fd, reply, strlen(reply), NULL, 0) == 0)
		exit(1);
	if (sink.report_fd >= 0 && fdio_write_all(sink.report_fd, reply, strlen(reply)) == 0)
		exit(1);
	fprintf(stderr, "%s\n", line);
	exit(1);
}

void fail_forward(const char *reply)
{
	deliver(reply, reply);
}

/* explained: the text already says what err means (and more); err is only reported. */
static NORETURN void finish(enum failure_class cls, int err, int explained, const char *text)
{
	char reply[4096], line[4096];
	if (explained)
		snprintf(reply, sizeof(reply), "error %d %s shifter-nshelper: %s", err, failure_class_names[cls], text);
	else
		failure_format(reply, sizeof(reply), cls, err, text);
	if (err && !explained)
		snprintf(line, sizeof(line), "shifter-nshelper: %s: %s", text, strerror(err));
	else
		snprintf(line, sizeof(line), "shifter-nshelper: %s", text);
	deliver(reply, line);
}

void fail(enum failure_class cls, int err, const char *fmt, ...)
{
	char text[3072];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	finish(cls, err, 0, text);
}

void fail_explained(enum failure_class cls, int err, const char *fmt, ...)
{
	char text[3072];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	finish(cls, err, 1, text);
}

void fail_hook(int exit_code, const char *fmt, ...)
{
	char text[3072];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	finish(FAILURE_HOOK, exit_code, 1, text);
}

void die(int err, const char *fmt, ...)
{
	char text[3072];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	finish(failure_class_of(err), err, 0, text);
}

void send_result(const char *text, const int *fds, int nfds)
{
	if (fdio_send_fds(sink.reply_fd, text, strlen(text), fds, nfds) < 0)
		die(errno, "send result: reply socket");
}
