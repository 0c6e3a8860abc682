/*
 * The client side of proto/launch-protocol.md, shared by the `shifter` launcher and the SPANK
 * plugin's task hook (`srun --image=X CMD`): ask shifterd for a launch over its socket, then
 * enter the environment it answers with (check the namespace fds, setns user then mount,
 * chdir, drop every capability, no_new_privs). Both callers run as the user, so shifterd sees
 * the user in SO_PEERCRED. Errors are values: each caller prints them its own way.
 */
#ifndef SHIFTER_LAUNCH_CLIENT_H
#define SHIFTER_LAUNCH_CLIENT_H

#include <stddef.h>

#include "fdio.h"

struct launch_error {
	int err;         /* errno, 0 when the text says it all */
	char text[1024]; /* "<step>: <detail>", without the "shifter: " prefix */
	int connect_err; /* connect(2)'s errno when nothing answered at the socket, else 0 */
};

enum launch_reply_kind { LAUNCH_REPLY_ERROR = 0, LAUNCH_REPLY_EXEC = 1 };

struct launch_reply {
	enum launch_reply_kind kind;
	unsigned char *body; /* owns the strings below */
	/* LAUNCH_REPLY_ERROR */
	int exit_code; /* 0..255 */
	const char *message;
	size_t message_len;
	/* LAUNCH_REPLY_EXEC */
	char **argv;
	char **env;
	const char *cwd;
	const char *notice;
	int userns_fd, mntns_fd; /* CLOEXEC; closed by launch_enter or launch_reply_free */
};

/*
 * Connects to the socket at path, sends argv/env/cwd, reads and checks the whole reply.
 * 0 with *reply filled, or -1 with *e.
 */
int launch_request(const char *path, char *const argv[], char *const env[], const char *cwd, struct launch_reply *reply,
                   struct launch_error *e);

/*
 * Enters an exec reply's environment (steps 2-5 of the protocol): checks the fds (user
 * namespace owned by getuid(), mount namespace), setns user then mount, chdir to the reply's
 * cwd, drops the capability bounding set and ambient caps, sets no_new_privs. A cwd that cannot
 * be entered is not fatal: the process stays in / and *warning says why (else it is "").
 * 0, or -1 with *e.
 */
int launch_enter(struct launch_reply *reply, char *warning, size_t warning_len, struct launch_error *e);

void launch_reply_free(struct launch_reply *reply);

#endif
