#define _GNU_SOURCE
#include "spec.h"

#include <ctype.h>
#include <errno.h>
#include <linux/mount.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "failure.h"

struct tokens {
	char *p, *end;
};

static const char *next_token(struct tokens *t, const char *what)
{
	char *nul = memchr(t->p, 0, (size_t)(t->end - t->p));
	if (!nul)
		fail(FAILURE_SPEC, EINVAL, "spec: %s", what);
	char *s = t->p;
	t->p = nul + 1;
	return s;
}

static unsigned long parse_num(const char *s, int base, const char *what)
{
	char *end;
	errno = 0;
	unsigned long v = strtoul(s, &end, base);
	if (errno || !*s || *end || s[0] == '-')
		fail(FAILURE_SPEC, EINVAL, "spec: bad number: %s", what);
	return v;
}

static const char *parse_target(struct tokens *t)
{
	const char *target = next_token(t, "target");
	size_t len = strlen(target);
	if (target[0] != '/' || strstr(target, "/../") || strcmp(target, "/") == 0 || len >= 4096 ||
	    (len >= 3 && strcmp(target + len - 3, "/..") == 0))
		fail(FAILURE_SPEC, 0, "spec: target must be an absolute path without '..' and not '/': %s", target);
	return target;
}

static const char *parse_absolute(struct tokens *t, const char *what, const char *rule)
{
	const char *path = next_token(t, what);
	if (path[0] != '/')
		fail(FAILURE_SPEC, 0, "spec: %s: %s", rule, path);
	return path;
}

/* Bind flags: nosuid and nodev are the default; "suid"/"dev" lift them. */
enum bind_switch { SWITCH_NONE, SWITCH_RECURSIVE, SWITCH_SLAVE, SWITCH_PRIVATE, SWITCH_AS_USER };

static const struct bind_flag {
	const char *name;
	unsigned int set, clear;
	enum bind_switch sw;
} bind_flags[] = {
	{ "ro", MOUNT_ATTR_RDONLY, 0, SWITCH_NONE },
	{ "rec", 0, 0, SWITCH_RECURSIVE },
	{ "suid", 0, MOUNT_ATTR_NOSUID, SWITCH_NONE },
	{ "dev", 0, MOUNT_ATTR_NODEV, SWITCH_NONE },
	{ "noexec", MOUNT_ATTR_NOEXEC, 0, SWITCH_NONE },
	{ "slave", 0, 0, SWITCH_SLAVE },
	{ "private", 0, 0, SWITCH_PRIVATE },
	{ "user", 0, 0, SWITCH_AS_USER },
};

static void apply_bind_flag(const char *name, struct op *op)
{
	for (size_t i = 0; i < sizeof(bind_flags) / sizeof(bind_flags[0]); i++) {
		const struct bind_flag *f = &bind_flags[i];
		if (strcmp(name, f->name))
			continue;
		op->attr = (op->attr | f->set) & ~f->clear;
		if (f->sw == SWITCH_RECURSIVE)
			op->recursive = 1;
		else if (f->sw == SWITCH_SLAVE || f->sw == SWITCH_PRIVATE)
			op->slave = f->sw == SWITCH_SLAVE;
		else if (f->sw == SWITCH_AS_USER)
			op->as_user = 1;
		return;
	}
	fail(FAILURE_SPEC, 0, "spec: unknown bind flag: %s", name);
}

static void parse_bind_flags(const char *flags, struct op *op)
{
	op->attr = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;
	char *copy = strdup(flags), *save = NULL;
	if (!copy)
		die(ENOMEM, "spec: out of memory");
	for (char *f = strtok_r(copy, ",", &save); f; f = strtok_r(NULL, ",", &save))
		apply_bind_flag(f, op);
	free(copy);
}

static void add_group(struct spec *s, gid_t g)
{
	if (s->ngroups == MAX_GROUPS)
		fail(FAILURE_SPEC, E2BIG, "spec: more than 340 groups");
	s->groups[s->ngroups++] = g;
}

/* ---- one parser per keyword; op is NULL for the keywords that are not mounts ---- */

static void parse_uid(struct tokens *t, struct spec *s, struct op *op)
{
	(void)op;
	s->uid = (uid_t)parse_num(next_token(t, "uid"), 10, "uid");
}

static void parse_gid(struct tokens *t, struct spec *s, struct op *op)
{
	(void)op;
	s->gid = (gid_t)parse_num(next_token(t, "gid"), 10, "gid");
}

static void parse_groups(struct tokens *t, struct spec *s, struct op *op)
{
	(void)op;
	char *list = strdup(next_token(t, "groups")), *save = NULL;
	if (!list)
		die(ENOMEM, "spec: out of memory");
	for (char *g = strtok_r(list, ",", &save); g; g = strtok_r(NULL, ",", &save))
		add_group(s, (gid_t)parse_num(g, 10, "group"));
	free(list);
}

static void parse_scaffold(struct tokens *t, struct spec *s, struct op *op)
{
	(void)op;
	if (s->nscaffold == MAX_SCAFFOLD)
		fail(FAILURE_SPEC, E2BIG, "spec: more than 64 scaffold directories");
	s->scaffold[s->nscaffold++] = parse_target(t);
}

static void parse_bind(struct tokens *t, struct spec *s, struct op *op)
{
	(void)s;
	op->source = parse_absolute(t, "bind source", "bind source must be absolute");
	op->target = parse_target(t);
	parse_bind_flags(next_token(t, "bind flags"), op);
}

static void parse_file(struct tokens *t, struct spec *s, struct op *op)
{
	(void)s;
	op->target = parse_target(t);
	op->mode = parse_num(next_token(t, "file mode"), 8, "file mode") & 0777;
	op->source = next_token(t, "file content");
}

static void parse_symlink(struct tokens *t, struct spec *s, struct op *op)
{
	(void)s;
	op->target = parse_target(t);
	op->source = next_token(t, "symlink text");
}

static void parse_dir(struct tokens *t, struct spec *s, struct op *op)
{
	(void)s;
	op->target = parse_target(t);
	op->mode = parse_num(next_token(t, "dir mode"), 8, "dir mode") & 07777;
}

static void parse_tmpfs(struct tokens *t, struct spec *s, struct op *op)
{
	(void)s;
	op->target = parse_target(t);
	op->mode = parse_num(next_token(t, "tmpfs mode"), 8, "tmpfs mode") & 07777;
	op->size = parse_num(next_token(t, "tmpfs size"), 10, "tmpfs size");
	const char *f = next_token(t, "tmpfs flags");
	op->attr = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;
	if (!strcmp(f, "noexec"))
		op->attr |= MOUNT_ATTR_NOEXEC;
	else if (*f)
		fail(FAILURE_SPEC, 0, "spec: unknown tmpfs flag: %s", f);
}

static void parse_proc(struct tokens *t, struct spec *s, struct op *op)
{
	(void)s;
	op->target = parse_target(t);
}

static void parse_cache(struct tokens *t, struct spec *s, struct op *op)
{
	(void)s;
	op->target = parse_target(t);
	op->size = parse_num(next_token(t, "cache size"), 10, "cache size");
	op->block_size = parse_num(next_token(t, "cache block size"), 10, "cache block size");
	op->fstype = next_token(t, "cache fs type");
	if (strcmp(op->fstype, "xfs") && strcmp(op->fstype, "ext4"))
		fail(FAILURE_SPEC, 0, "spec: perNodeCache fs type must be xfs or ext4: %s", op->fstype);
	op->source = next_token(t, "cache backing directory");
	op->mkfs = next_token(t, "cache mkfs");
	if (op->source[0] != '/' || op->mkfs[0] != '/')
		fail(FAILURE_SPEC, 0, "spec: perNodeCache backing directory and mkfs must be absolute paths: %s",
		     op->source);
	op->uid = (uid_t)parse_num(next_token(t, "cache uid"), 10, "cache uid");
	op->gid = (gid_t)parse_num(next_token(t, "cache gid"), 10, "cache gid");
	if (op->size == 0)
		fail(FAILURE_SPEC, 0, "spec: perNodeCache size must be positive: %s", op->target);
}

static void parse_hook(struct tokens *t, struct spec *s, struct op *op)
{
	(void)s;
	op->target = next_token(t, "hook name");
	op->source = parse_absolute(t, "hook script", "hook script must be an absolute path");
}

/* A module name as udiRoot.conf allows it: it appears in messages and log lines. */
static int is_module_name(const char *s)
{
	if (!s[0] || strlen(s) > 64)
		return 0;
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && *s != '-' && *s != '.')
			return 0;
	return 1;
}

static void parse_roothook(struct tokens *t, struct spec *s, struct op *op)
{
	(void)s;
	op->target = next_token(t, "roothook module");
	if (!is_module_name(op->target))
		fail(FAILURE_SPEC, EINVAL, "spec: roothook module name must be letters, digits, '-' or '.': %s",
		     op->target);
	op->source = parse_absolute(t, "roothook script", "roothook script must be an absolute path");
	op->size = parse_num(next_token(t, "roothook time limit"), 10, "roothook time limit");
	if (op->size == 0 || op->size > 86400)
		fail(FAILURE_SPEC, EINVAL, "spec: roothook time limit must be 1..86400 seconds: %s", op->target);
}

/* The spec's keywords: the first four set the user and the scaffold, the others add an op of kind. */
static const struct keyword {
	const char *name;
	int is_op;
	enum op_kind kind; /* ops only */
	void (*parse)(struct tokens *t, struct spec *s, struct op *op);
} keywords[] = {
	{ "uid", 0, OP_BIND, parse_uid },
	{ "gid", 0, OP_BIND, parse_gid },
	{ "groups", 0, OP_BIND, parse_groups },
	{ "scaffold", 0, OP_BIND, parse_scaffold },
	{ "bind", 1, OP_BIND, parse_bind },
	{ "file", 1, OP_FILE, parse_file },
	{ "symlink", 1, OP_SYMLINK, parse_symlink },
	{ "dir", 1, OP_DIR, parse_dir },
	{ "tmpfs", 1, OP_TMPFS, parse_tmpfs },
	{ "proc", 1, OP_PROC, parse_proc },
	{ "cache", 1, OP_CACHE, parse_cache },
	{ "hook", 1, OP_HOOK, parse_hook },
	{ "roothook", 1, OP_ROOTHOOK, parse_roothook },
};

static const struct keyword *find_keyword(const char *name)
{
	for (size_t i = 0; i < sizeof(keywords) / sizeof(keywords[0]); i++)
		if (!strcmp(name, keywords[i].name))
			return &keywords[i];
	fail(FAILURE_SPEC, 0, "spec: unknown keyword: %s", name);
}

/* The invariants that hold for the spec as a whole (README: "What the helper enforces"). */
static void check_spec(struct spec *s, int have_uid, int have_gid)
{
	if (!have_uid || !have_gid)
		fail(FAILURE_SPEC, EINVAL, "spec: uid and gid are required");
	if (s->uid == 0 || s->gid == 0)
		fail(FAILURE_SPEC, EPERM, "spec: refusing to create an environment for uid 0 or gid 0");
	for (int i = 0; i < s->ngroups; i++)
		if (s->groups[i] == 0)
			fail(FAILURE_SPEC, EPERM, "spec: refusing group 0");
	for (int i = 0; i < s->nops; i++)
		if (s->ops[i].kind == OP_CACHE && (s->ops[i].uid != s->uid || s->ops[i].gid != s->gid))
			fail(FAILURE_SPEC, EPERM, "spec: a perNodeCache must belong to the environment's user: %s",
			     s->ops[i].target);
	int has_primary = 0;
	for (int i = 0; i < s->ngroups; i++)
		has_primary |= s->groups[i] == s->gid;
	if (!has_primary)
		add_group(s, s->gid);
}

void parse_spec(char *data, size_t len, struct spec *s)
{
	struct tokens t = { data, data + len };
	int have_uid = 0, have_gid = 0;
	for (;;) {
		const char *key = next_token(&t, "truncated (no \"end\")");
		if (!strcmp(key, "end"))
			break;
		const struct keyword *k = find_keyword(key);
		have_uid |= k->parse == parse_uid;
		have_gid |= k->parse == parse_gid;
		if (!k->is_op) {
			k->parse(&t, s, NULL);
			continue;
		}
		if (s->nops == MAX_OPS)
			fail(FAILURE_SPEC, E2BIG, "spec: too many mounts");
		struct op *op = &s->ops[s->nops++];
		memset(op, 0, sizeof(*op));
		op->kind = k->kind;
		op->tree = -1;
		k->parse(&t, s, op);
	}
	if (t.p != t.end)
		fail(FAILURE_SPEC, EINVAL, "spec: bytes after \"end\"");
	check_spec(s, have_uid, have_gid);
}

char *read_spec(int fd, size_t *len)
{
	size_t cap = 65536;
	char *data = malloc(cap);
	*len = 0;
	if (!data)
		die(ENOMEM, "read spec: out of memory");
	for (;;) {
		if (*len == cap) {
			if (cap >= MAX_SPEC)
				fail(FAILURE_SPEC, E2BIG, "read spec: larger than 16 MiB");
			cap *= 2;
			data = realloc(data, cap);
			if (!data)
				die(ENOMEM, "read spec: out of memory");
		}
		ssize_t n = fdio_read(fd, data + *len, cap - *len);
		if (n < 0)
			die(errno, "read spec: stdin");
		if (n == 0)
			return data;
		*len += (size_t)n;
	}
}
