/*
 * How the helper fails: one structured reply on the request's reply socket,
 *     "error <errno> <class> <text>"
 * with errno in decimal (0: none), class one of the names below and text the one line shown to
 * the user ("shifter-nshelper: <step>: <path>[: <errno text>]"). No fds come with it.
 * node-daemon/adapters/helper-failure.ts mirrors the classes (test/native/helper-failure.test.ts
 * checks that the enum, failure_class_names and the TypeScript union agree); nobody parses the
 * text.
 */
#ifndef NSHELPER_FAILURE_H
#define NSHELPER_FAILURE_H

#include "../common/fdio.h"

enum failure_class {
	FAILURE_SYSTEM,  /* a system call failed for a reason not below */
	FAILURE_DENIED,  /* EACCES or EPERM: the user (or root) may not do this */
	FAILURE_MISSING, /* ENOENT: a path named in the request does not exist */
	FAILURE_UNSAFE,  /* a path would leave the container root or go through a refused symlink */
	FAILURE_SPEC,    /* the request or the spec breaks an invariant: a bug in the daemon */
	FAILURE_PROGRAM, /* a site hook or mkfs exited non-zero */
	FAILURE_HOOK,    /* a module hook failed; the errno field carries its exit code instead */
};

/* The wire names, indexed by enum failure_class (defined in failure.c). */
extern const char *const failure_class_names[];

/* Where failures go: the request's reply socket (-1: stderr, in the server itself). */
void failure_reply_to(int reply_fd);
/* The reply socket failures go to, handed to the caller (which must close it); -1 afterwards. */
int failure_take_reply(void);
/* In the child that becomes the user: failures go up the pipe to the parent. */
void failure_report_to(int pipe_fd);
/* A file removed before any failure is reported (a perNodeCache being made); NULL: none. */
void failure_remove_on_failure(const char *path);

/* The class a bare errno falls in. */
enum failure_class failure_class_of(int err);

/* Formats the structured reply for a failure (text without the "shifter-nshelper: " prefix). */
void failure_format(char *out, size_t len, enum failure_class cls, int err, const char *text);

/* Fails the request: "shifter-nshelper: <fmt...>[: strerror(err)]" in class cls. */
NORETURN PRINTF_LIKE(3, 4) void fail(enum failure_class cls, int err, const char *fmt, ...);
/* fail() for a text that already explains err (the kernel's own words): err is only reported. */
NORETURN PRINTF_LIKE(3, 4) void fail_explained(enum failure_class cls, int err, const char *fmt, ...);
/* fail() with the class of err. */
NORETURN PRINTF_LIKE(2, 3) void die(int err, const char *fmt, ...);
/* Fails the request in class hook: the number sent is the hook's exit code, not an errno. */
NORETURN PRINTF_LIKE(2, 3) void fail_hook(int exit_code, const char *fmt, ...);
/* Sends a failure reply made by failure_format() elsewhere (the user child) as it is. */
NORETURN void fail_forward(const char *reply);

/* A successful answer: text and fds on the reply socket. */
void send_result(const char *text, const int *fds, int nfds);

#endif
