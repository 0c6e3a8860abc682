/*
 * The create-env spec: NUL-terminated tokens read from a memfd (encoded by
 * node-daemon/adapters/spec-encoding.ts). The grammar and the invariants checked here are in
 * native/README.md; the helper enforces them whatever the daemon sent.
 */
#ifndef NSHELPER_SPEC_H
#define NSHELPER_SPEC_H

#include <stddef.h>
#include <sys/types.h>

#define MAX_SPEC (16u * 1024 * 1024)
#define MAX_OPS 4096
#define MAX_GROUPS 340 /* gid_map extents the kernel accepts */
#define MAX_SCAFFOLD 64

enum op_kind { OP_BIND, OP_FILE, OP_SYMLINK, OP_DIR, OP_TMPFS, OP_PROC, OP_HOOK, OP_CACHE, OP_ROOTHOOK };

struct op {
	enum op_kind kind;
	const char *target;
	/* bind: host path; symlink: link text; file: content; hook, roothook: script; cache: backing directory */
	const char *source;
	const char *fstype, *mkfs; /* cache */
	unsigned long block_size;  /* cache; 0: mkfs's default */
	uid_t uid;                 /* cache: owner of its root */
	gid_t gid;
	unsigned long mode;
	unsigned long size; /* tmpfs, cache: bytes; roothook: its time limit in seconds */
	unsigned int attr;  /* MOUNT_ATTR_* to set */
	int recursive, as_user, slave;
	int tree; /* bind, cache: the detached mount, -1 once attached */
};

struct spec {
	uid_t uid;
	gid_t gid;
	gid_t groups[MAX_GROUPS];
	int ngroups;
	const char *scaffold[MAX_SCAFFOLD];
	int nscaffold;
	struct op ops[MAX_OPS];
	int nops;
};

/* Reads the whole spec (at most MAX_SPEC bytes) from fd. */
char *read_spec(int fd, size_t *len);

/* Parses and checks the spec; s points into data. Fails the request (class spec) when invalid. */
void parse_spec(char *data, size_t len, struct spec *s);

#endif
