/*
 * shifter-nshelper: the single-threaded root helper for the namespace and mount work Node
 * cannot do (Node is multithreaded). See native/README.md for the interface.
 *
 *   shifter-nshelper serve <daemon pid>
 *       Started once by shifterd; dies with it. fd 3: a SOCK_SEQPACKET control socket. Each
 *       request is one message; the helper forks one child per request, which answers on the
 *       reply socket that came with the request and exits:
 *       "attach-image <squashfs file>" + [reply] -> "loop=/dev/loopN" + [detached mount fd]
 *       "create-env" + [reply, spec memfd, image mount fd]
 *           -> "ok us=<microseconds it took>" + [user ns fd, mnt ns fd]
 *       The spec: NUL-terminated tokens, see parse_spec.
 *
 * Errors: one reply "error shifter-nshelper: <step>: <path>: <errno text>", no fds.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/loop.h>
#include <linux/openat2.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/fsuid.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CONTROL_FD 3
#define REQUEST_TIMEOUT_S 120 /* a request stuck this long (a hung image source?) is killed */
#define MAX_SPEC (16u * 1024 * 1024)
#define MAX_OPS 4096
#define MAX_GROUPS 340 /* gid_map extents the kernel accepts */
#define COPY_LIMIT (1024 * 1024)
/* Where the scaffold is attached in the helper's private namespace: a directory of its own, so
 * that hooks and mkfs still see the host's /tmp. */
#define STAGING "/run/shifter-nshelper"
#define IMAGE_STAGING ".shifter-image-staging"
#define FUSE_SUPER_MAGIC 0x65735546
#define CLEAN_PATH "PATH=/usr/bin:/usr/sbin:/bin:/sbin"

/* A perNodeCache backing file being made: removed if the helper dies before it is unlinked. */
static char pending_unlink[4096];

/* Where a request's answer goes: its reply socket; -1 in the server itself. */
static int result_fd = -1;
/* In the child that becomes the user (which holds no reply socket): the pipe to its parent. */
static int report_fd = -1;

static void fail(const char *line)
{
	if (pending_unlink[0])
		unlink(pending_unlink);
	if (result_fd >= 0) {
		char text[4096];
		snprintf(text, sizeof(text), "error %s", line);
		int fd = result_fd;
		result_fd = -1;
		struct iovec iov = { text, strlen(text) };
		struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
		if (sendmsg(fd, &msg, MSG_NOSIGNAL) >= 0)
			exit(1);
	} else if (report_fd >= 0) {
		if (write(report_fd, line, strlen(line)) > 0)
			exit(1);
	}
	fprintf(stderr, "%s\n", line);
	exit(1);
}

static void die(const char *step, const char *path, int err)
{
	char line[3072];
	if (err)
		snprintf(line, sizeof(line), "shifter-nshelper: %s: %s: %s", step, path, strerror(err));
	else
		snprintf(line, sizeof(line), "shifter-nshelper: %s: %s", step, path);
	fail(line);
}

static void send_result(const char *text, const int *fds, int nfds)
{
	union {
		struct cmsghdr h;
		char space[CMSG_SPACE(sizeof(int) * 2)];
	} ctl;
	memset(&ctl, 0, sizeof(ctl));
	struct iovec iov = { (void *)text, strlen(text) };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1,
			      .msg_control = ctl.space, .msg_controllen = CMSG_SPACE(sizeof(int) * nfds) };
	if (nfds == 0) {
		msg.msg_control = NULL;
		msg.msg_controllen = 0;
	} else {
		struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
		memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
	}
	if (sendmsg(result_fd, &msg, MSG_NOSIGNAL) < 0)
		die("send result", "reply socket", errno);
}

/* ---- attach-image: loop device + detached squashfs mount ---- */

static int attach_loop(int backing, const char *image, int writable, char *dev, size_t devlen)
{
	struct statfs sfs;
	if (fstatfs(backing, &sfs) < 0)
		die("fstatfs", image, errno);
	int ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
	if (ctl < 0)
		die("open", "/dev/loop-control", errno);
	struct loop_config cfg;
	memset(&cfg, 0, sizeof(cfg));
	cfg.fd = (uint32_t)backing;
	cfg.info.lo_flags = (writable ? 0 : LO_FLAGS_READ_ONLY) | LO_FLAGS_AUTOCLEAR;
	/* On FUSE the page cache would hold the image twice (FUSE file + loop device). */
	if (sfs.f_type == FUSE_SUPER_MAGIC)
		cfg.info.lo_flags |= LO_FLAGS_DIRECT_IO;
	snprintf((char *)cfg.info.lo_file_name, LO_NAME_SIZE, "%s", image);
	/* Concurrent attaches can be handed the same free device: retry on EBUSY. */
	for (int attempt = 0; attempt < 64; attempt++) {
		int n = ioctl(ctl, LOOP_CTL_GET_FREE);
		if (n < 0)
			die("LOOP_CTL_GET_FREE", "/dev/loop-control", errno);
		snprintf(dev, devlen, "/dev/loop%d", n);
		int loop = open(dev, (writable ? O_RDWR : O_RDONLY) | O_CLOEXEC);
		if (loop < 0)
			die("open", dev, errno);
		if (ioctl(loop, LOOP_CONFIGURE, &cfg) == 0) {
			if (close(ctl) < 0)
				die("close", "/dev/loop-control", errno);
			return loop;
		}
		int err = errno;
		close(loop);
		if (err != EBUSY)
			die("LOOP_CONFIGURE", dev, err);
	}
	die("LOOP_CONFIGURE", "no free loop device after 64 attempts", EBUSY);
	return -1;
}

/* The kernel explains fsconfig failures in a message readable from the fs context fd. */
static void die_fs(int fsfd, const char *step, const char *what, int err)
{
	char msg[512];
	ssize_t n = read(fsfd, msg, sizeof(msg) - 1);
	if (n > 0) {
		msg[n] = '\0';
		msg[strcspn(msg, "\n")] = '\0';
		char line[3072];
		snprintf(line, sizeof(line), "shifter-nshelper: %s: %s: %s (%s)", step, what, strerror(err), msg);
		fail(line);
	}
	die(step, what, err);
}

/* ---- child programs (hooks, mkfs) ---- */

/* Copies a line, cut to fit (a long line is still better than none in an error message). */
static void keep_line(char *dst, size_t len, const char *line)
{
	size_t n = strnlen(line, len - 1);
	memcpy(dst, line, n);
	dst[n] = '\0';
}

/*
 * Runs argv[0] as root with a clean environment, stdin and stdout on /dev/null, cwd = cwdfd
 * (when >= 0) and none of the helper's fds, and waits for it. Returns the wait status; the
 * last non-empty line the program wrote on stderr lands in last.
 */
static int run_program(const char *const argv[], int cwdfd, char *last, size_t lastlen)
{
	int errpipe[2];
	if (pipe2(errpipe, O_CLOEXEC) < 0)
		die("pipe2", argv[0], errno);
	pid_t pid = fork();
	if (pid < 0)
		die("fork", argv[0], errno);
	if (pid == 0) {
		/* No stray process may outlive the helper (a killed helper kills a hung hook). */
		prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
		sigset_t none;
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		signal(SIGPIPE, SIG_DFL);
		signal(SIGCHLD, SIG_DFL);
		int null = open("/dev/null", O_RDWR);
		if (null < 0 || dup2(null, 0) < 0 || dup2(null, 1) < 0 || dup2(errpipe[1], 2) < 0)
			_exit(126);
		if (cwdfd >= 0 && fchdir(cwdfd) < 0) {
			dprintf(2, "cannot enter the container root: %s\n", strerror(errno));
			_exit(126);
		}
		if (close_range(3, ~0U, 0) < 0)
			_exit(126);
		char *const env[] = { CLEAN_PATH, NULL };
		execve(argv[0], (char *const *)argv, env);
		dprintf(2, "cannot run %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	if (close(errpipe[1]) < 0)
		die("close", "stderr pipe", errno);
	char buf[4096];
	size_t fill = 0;
	last[0] = '\0';
	for (;;) {
		ssize_t n = read(errpipe[0], buf + fill, sizeof(buf) - 1 - fill);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		fill += (size_t)n;
		buf[fill] = '\0';
		/* Keep complete lines' last one; drop what is before it so the buffer never fills. */
		char *nl;
		while ((nl = strchr(buf, '\n')) != NULL) {
			*nl = '\0';
			if (buf[0])
				keep_line(last, lastlen, buf);
			memmove(buf, nl + 1, fill - (size_t)(nl + 1 - buf) + 1);
			fill -= (size_t)(nl + 1 - buf);
		}
		if (fill == sizeof(buf) - 1)
			fill = 0;
	}
	if (fill > 0 && buf[0])
		keep_line(last, lastlen, buf);
	if (close(errpipe[0]) < 0)
		die("close", "stderr pipe", errno);
	int status;
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			die("waitpid", argv[0], errno);
	return status;
}

/* "exited with status 3" / "was killed by signal 9", plus the last stderr line if any. */
static void describe_failure(int status, const char *last, char *out, size_t len)
{
	int n = WIFEXITED(status) ? snprintf(out, len, "exited with status %d", WEXITSTATUS(status))
				  : snprintf(out, len, "was killed by signal %d", WTERMSIG(status));
	if (last[0] && n > 0 && (size_t)n < len)
		snprintf(out + n, len - (size_t)n, " (last stderr line: %s)", last);
}

static int cmd_attach_image(const char *image)
{
	int backing = open(image, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (backing < 0)
		die("open image", image, errno);
	struct stat st;
	if (fstat(backing, &st) < 0)
		die("fstat", image, errno);
	if (!S_ISREG(st.st_mode))
		die("open image", image, EINVAL);
	char dev[64];
	int loop = attach_loop(backing, image, 0, dev, sizeof(dev));
	int fsfd = fsopen("squashfs", FSOPEN_CLOEXEC);
	if (fsfd < 0)
		die("fsopen", "squashfs", errno);
	if (fsconfig(fsfd, FSCONFIG_SET_STRING, "source", dev, 0) < 0)
		die_fs(fsfd, "fsconfig source", dev, errno);
	if (fsconfig(fsfd, FSCONFIG_SET_FLAG, "ro", NULL, 0) < 0)
		die_fs(fsfd, "fsconfig ro", dev, errno);
	if (fsconfig(fsfd, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0)
		die_fs(fsfd, "mount squashfs (is it a squashfs image?)", image, errno);
	int mnt = fsmount(fsfd, FSMOUNT_CLOEXEC, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV);
	if (mnt < 0)
		die("fsmount", image, errno);
	/* The superblock now holds the loop device; autoclear releases it with the last mount. */
	if (close(fsfd) < 0 || close(loop) < 0 || close(backing) < 0)
		die("close", image, errno);
	char text[96];
	snprintf(text, sizeof(text), "loop=%s", dev);
	send_result(text, &mnt, 1);
	return 0;
}

/* ---- create-env: the spec ---- */

enum op_kind { OP_BIND, OP_FILE, OP_SYMLINK, OP_DIR, OP_TMPFS, OP_PROC, OP_HOOK, OP_CACHE };

struct op {
	enum op_kind kind;
	const char *target;
	const char *source;  /* bind: host path; symlink: link text; file: content; hook: script;
			      * cache: backing directory */
	const char *fstype, *mkfs; /* cache */
	unsigned long block_size; /* cache; 0: mkfs's default */
	uid_t uid;           /* cache: owner of its root */
	gid_t gid;
	unsigned long mode;
	unsigned long size;
	unsigned int attr;   /* MOUNT_ATTR_* to set */
	int recursive, as_user, slave;
	int tree;            /* bind: the detached clone of the source */
};

struct spec {
	uid_t uid;
	gid_t gid;
	gid_t groups[MAX_GROUPS];
	int ngroups;
	const char *scaffold[64];
	int nscaffold;
	struct op ops[MAX_OPS];
	int nops;
};

struct tokens {
	char *p, *end;
};

static const char *next_token(struct tokens *t, const char *what)
{
	char *nul = memchr(t->p, 0, (size_t)(t->end - t->p));
	if (!nul)
		die("spec", what, EINVAL);
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
		die("spec: bad number", what, EINVAL);
	return v;
}

static const char *parse_target(struct tokens *t)
{
	const char *target = next_token(t, "target");
	if (target[0] != '/' || strstr(target, "/../") || strcmp(target, "/") == 0 ||
	    strlen(target) >= 4096 || (strlen(target) >= 3 && strcmp(target + strlen(target) - 3, "/..") == 0))
		die("spec: target must be an absolute path without '..' and not '/'", target, 0);
	return target;
}

static unsigned int parse_bind_flags(const char *flags, struct op *op)
{
	unsigned int attr = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;
	char *copy = strdup(flags), *save = NULL;
	if (!copy)
		die("spec", "out of memory", ENOMEM);
	for (char *f = strtok_r(copy, ",", &save); f; f = strtok_r(NULL, ",", &save)) {
		if (!strcmp(f, "ro"))
			attr |= MOUNT_ATTR_RDONLY;
		else if (!strcmp(f, "rec"))
			op->recursive = 1;
		else if (!strcmp(f, "suid"))
			attr &= ~(unsigned int)MOUNT_ATTR_NOSUID;
		else if (!strcmp(f, "dev"))
			attr &= ~(unsigned int)MOUNT_ATTR_NODEV;
		else if (!strcmp(f, "noexec"))
			attr |= MOUNT_ATTR_NOEXEC;
		else if (!strcmp(f, "slave"))
			op->slave = 1;
		else if (!strcmp(f, "private"))
			op->slave = 0;
		else if (!strcmp(f, "user"))
			op->as_user = 1;
		else
			die("spec: unknown bind flag", f, 0);
	}
	free(copy);
	return attr;
}

/*
 * Tokens (each NUL-terminated): "uid" N "gid" N "groups" "g1,g2" then any of
 *   "scaffold" DIR | "bind" SRC TARGET FLAGS | "file" TARGET MODE8 CONTENT |
 *   "symlink" TARGET LINKTEXT | "dir" TARGET MODE8 | "tmpfs" TARGET MODE8 SIZE FLAGS |
 *   "proc" TARGET | "hook" NAME SCRIPT |
 *   "cache" TARGET SIZE BLOCKSIZE FSTYPE BACKINGDIR MKFS UID GID
 * and finally "end". Bind FLAGS: comma list of ro,rec,suid,dev,noexec,slave,private,user
 * (nosuid and nodev are the default; "suid"/"dev" lift them). tmpfs FLAGS: "" or "noexec".
 */
static void parse_spec(char *data, size_t len, struct spec *s)
{
	struct tokens t = { data, data + len };
	int have_uid = 0, have_gid = 0;
	for (;;) {
		const char *key = next_token(&t, "truncated (no \"end\")");
		if (!strcmp(key, "end"))
			break;
		if (!strcmp(key, "uid")) {
			s->uid = (uid_t)parse_num(next_token(&t, "uid"), 10, "uid");
			have_uid = 1;
		} else if (!strcmp(key, "gid")) {
			s->gid = (gid_t)parse_num(next_token(&t, "gid"), 10, "gid");
			have_gid = 1;
		} else if (!strcmp(key, "groups")) {
			char *list = strdup(next_token(&t, "groups")), *save = NULL;
			if (!list)
				die("spec", "out of memory", ENOMEM);
			for (char *g = strtok_r(list, ",", &save); g; g = strtok_r(NULL, ",", &save)) {
				if (s->ngroups == MAX_GROUPS)
					die("spec", "more than 340 groups", E2BIG);
				s->groups[s->ngroups++] = (gid_t)parse_num(g, 10, "group");
			}
			free(list);
		} else if (!strcmp(key, "scaffold")) {
			if (s->nscaffold == 64)
				die("spec", "more than 64 scaffold directories", E2BIG);
			s->scaffold[s->nscaffold++] = parse_target(&t);
		} else {
			if (s->nops == MAX_OPS)
				die("spec", "too many mounts", E2BIG);
			struct op *op = &s->ops[s->nops++];
			memset(op, 0, sizeof(*op));
			op->tree = -1;
			if (!strcmp(key, "bind")) {
				op->kind = OP_BIND;
				op->source = next_token(&t, "bind source");
				if (op->source[0] != '/')
					die("spec: bind source must be absolute", op->source, 0);
				op->target = parse_target(&t);
				op->attr = parse_bind_flags(next_token(&t, "bind flags"), op);
			} else if (!strcmp(key, "file")) {
				op->kind = OP_FILE;
				op->target = parse_target(&t);
				op->mode = parse_num(next_token(&t, "file mode"), 8, "file mode") & 0777;
				op->source = next_token(&t, "file content");
			} else if (!strcmp(key, "symlink")) {
				op->kind = OP_SYMLINK;
				op->target = parse_target(&t);
				op->source = next_token(&t, "symlink text");
			} else if (!strcmp(key, "dir")) {
				op->kind = OP_DIR;
				op->target = parse_target(&t);
				op->mode = parse_num(next_token(&t, "dir mode"), 8, "dir mode") & 07777;
			} else if (!strcmp(key, "tmpfs")) {
				op->kind = OP_TMPFS;
				op->target = parse_target(&t);
				op->mode = parse_num(next_token(&t, "tmpfs mode"), 8, "tmpfs mode") & 07777;
				op->size = parse_num(next_token(&t, "tmpfs size"), 10, "tmpfs size");
				const char *f = next_token(&t, "tmpfs flags");
				op->attr = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;
				if (!strcmp(f, "noexec"))
					op->attr |= MOUNT_ATTR_NOEXEC;
				else if (*f)
					die("spec: unknown tmpfs flag", f, 0);
			} else if (!strcmp(key, "proc")) {
				op->kind = OP_PROC;
				op->target = parse_target(&t);
			} else if (!strcmp(key, "cache")) {
				op->kind = OP_CACHE;
				op->target = parse_target(&t);
				op->size = parse_num(next_token(&t, "cache size"), 10, "cache size");
				op->block_size = parse_num(next_token(&t, "cache block size"), 10, "cache block size");
				op->fstype = next_token(&t, "cache fs type");
				if (strcmp(op->fstype, "xfs") && strcmp(op->fstype, "ext4"))
					die("spec: perNodeCache fs type must be xfs or ext4", op->fstype, 0);
				op->source = next_token(&t, "cache backing directory");
				op->mkfs = next_token(&t, "cache mkfs");
				if (op->source[0] != '/' || op->mkfs[0] != '/')
					die("spec: perNodeCache backing directory and mkfs must be absolute paths", op->source, 0);
				op->uid = (uid_t)parse_num(next_token(&t, "cache uid"), 10, "cache uid");
				op->gid = (gid_t)parse_num(next_token(&t, "cache gid"), 10, "cache gid");
				if (op->size == 0)
					die("spec: perNodeCache size must be positive", op->target, 0);
			} else if (!strcmp(key, "hook")) {
				op->kind = OP_HOOK;
				op->target = next_token(&t, "hook name");
				op->source = next_token(&t, "hook script");
				if (op->source[0] != '/')
					die("spec: hook script must be an absolute path", op->source, 0);
			} else {
				die("spec: unknown keyword", key, 0);
			}
		}
	}
	if (t.p != t.end)
		die("spec", "bytes after \"end\"", EINVAL);
	if (!have_uid || !have_gid)
		die("spec", "uid and gid are required", EINVAL);
	if (s->uid == 0 || s->gid == 0)
		die("spec", "refusing to create an environment for uid 0 or gid 0", EPERM);
	for (int i = 0; i < s->nops; i++)
		if (s->ops[i].kind == OP_CACHE && (s->ops[i].uid != s->uid || s->ops[i].gid != s->gid))
			die("spec: a perNodeCache must belong to the environment's user", s->ops[i].target, EPERM);
	int has_primary = 0;
	for (int i = 0; i < s->ngroups; i++)
		has_primary |= s->groups[i] == s->gid;
	if (!has_primary) {
		if (s->ngroups == MAX_GROUPS)
			die("spec", "more than 340 groups", E2BIG);
		s->groups[s->ngroups++] = s->gid;
	}
}

static char *read_all(int fd, size_t *len)
{
	size_t cap = 65536;
	char *data = malloc(cap);
	*len = 0;
	if (!data)
		die("read spec", "out of memory", ENOMEM);
	for (;;) {
		if (*len == cap) {
			if (cap >= MAX_SPEC)
				die("read spec", "larger than 16 MiB", E2BIG);
			cap *= 2;
			data = realloc(data, cap);
			if (!data)
				die("read spec", "out of memory", ENOMEM);
		}
		ssize_t n = read(fd, data + *len, cap - *len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			die("read spec", "stdin", errno);
		if (n == 0)
			return data;
		*len += (size_t)n;
	}
}

/* ---- create-env: phase 0, in the host mount namespace ---- */

static void set_fs_identity(const struct spec *s, int as_user)
{
	if (as_user) {
		if (setgroups((size_t)s->ngroups, s->groups) < 0)
			die("setgroups", "user volume", errno);
		setfsgid(s->gid);
		setfsuid(s->uid);
		if ((uid_t)setfsuid((uid_t)-1) != s->uid || (gid_t)setfsgid((gid_t)-1) != s->gid)
			die("setfsuid/setfsgid", "user volume", EPERM);
	} else {
		setfsuid(0);
		setfsgid(0);
		if (setfsuid((uid_t)-1) != 0 || setfsgid((gid_t)-1) != 0)
			die("setfsuid/setfsgid", "back to root", EPERM);
		if (setgroups(0, NULL) < 0)
			die("setgroups", "back to root", errno);
	}
}

/*
 * Detached clone of a bind source with its flags set before it is visible anywhere. A user
 * volume is opened as the user, who must be able to read it (and search it, for a directory);
 * the clone is then made from that fd, so root's credentials never resolve the user's path.
 */
static void clone_source(const struct spec *s, struct op *op)
{
	/*
	 * A user volume is always cloned with the mounts below it, nosuid and nodev: a single-level
	 * clone would show the user what host mounts cover under the source (the kernel refuses
	 * an unprivileged user exactly that bind), and a user never gets device nodes.
	 */
	if (op->as_user) {
		op->recursive = 1;
		op->attr |= MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;
	}
	int from = AT_FDCWD, flags = OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | (op->recursive ? AT_RECURSIVE : 0);
	const char *path = op->source;
	if (op->as_user) {
		set_fs_identity(s, 1);
		/* No magic links: /proc/self/{root,cwd,fd/N} would name this root helper's own fds. */
		struct open_how how = { .flags = O_PATH | O_CLOEXEC, .resolve = RESOLVE_NO_MAGICLINKS };
		from = (int)syscall(SYS_openat2, AT_FDCWD, op->source, &how, sizeof(how));
		struct stat st;
		int err = from < 0 || fstat(from, &st) < 0 ? errno : 0;
		if (!err && faccessat(from, "", S_ISDIR(st.st_mode) ? R_OK | X_OK : R_OK, AT_EMPTY_PATH | AT_EACCESS) < 0)
			err = errno;
		set_fs_identity(s, 0);
		if (err)
			die("open volume source as the user", op->source, err);
		path = "";
		flags |= AT_EMPTY_PATH;
	}
	op->tree = open_tree(from, path, flags);
	if (op->tree < 0)
		die("open bind source", op->source, errno);
	if (from >= 0 && close(from) < 0)
		die("close", op->source, errno);
	struct mount_attr attr = { .attr_set = op->attr, .propagation = op->slave ? MS_SLAVE : MS_PRIVATE };
	if (mount_setattr(op->tree, "", AT_EMPTY_PATH | (op->recursive ? AT_RECURSIVE : 0), &attr, sizeof(attr)) < 0)
		die("mount_setattr", op->source, errno);
}

static void run_mkfs(const struct op *op, const char *path)
{
	char bs[48] = "";
	const char *argv[10];
	int n = 0;
	argv[n++] = op->mkfs;
	if (!strcmp(op->fstype, "xfs")) {
		/* -K: no discard pass over a file that is all holes anyway. */
		argv[n++] = "-q"; argv[n++] = "-f"; argv[n++] = "-K";
		if (op->block_size) {
			snprintf(bs, sizeof(bs), "size=%lu", op->block_size);
			argv[n++] = "-b"; argv[n++] = bs;
		}
	} else {
		argv[n++] = "-q"; argv[n++] = "-F"; argv[n++] = "-E"; argv[n++] = "nodiscard";
		if (op->block_size) {
			snprintf(bs, sizeof(bs), "%lu", op->block_size);
			argv[n++] = "-b"; argv[n++] = bs;
		}
	}
	argv[n++] = path;
	argv[n] = NULL;
	char last[512], why[1024];
	int status = run_program(argv, -1, last, sizeof(last));
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return;
	describe_failure(status, last, why, sizeof(why));
	die(op->mkfs, why, 0);
}

/*
 * A perNodeCache (upstream's per-node scratch volume): a sparse file in the backing directory,
 * a fresh filesystem on it on a read-write autoclear loop device, mounted detached
 * (nosuid, nodev) with its root owned by the user. The file is unlinked at once: its space
 * comes back when the last mount of it goes, with the environment.
 */
static void make_cache(struct op *op)
{
	char host[128];
	if (gethostname(host, sizeof(host)) < 0)
		die("gethostname", "perNodeCache", errno);
	host[sizeof(host) - 1] = '\0';
	for (char *c = host; *c; c++)
		if (*c == '/')
			*c = '_';
	char path[sizeof(pending_unlink)];
	if (snprintf(path, sizeof(path), "%s/perNodeCache_uid%u_gid%u_%s.%s.XXXXXX", op->source, op->uid, op->gid,
		     host, op->fstype) >= (int)sizeof(path))
		die("perNodeCache backing file", "path too long", ENAMETOOLONG);
	int fd = mkostemp(path, O_CLOEXEC);
	if (fd < 0)
		die("create perNodeCache backing file in", op->source, errno);
	memcpy(pending_unlink, path, sizeof(path));
	if (ftruncate(fd, (off_t)op->size) < 0)
		die("size perNodeCache backing file", path, errno);
	run_mkfs(op, path);
	char dev[64];
	int loop = attach_loop(fd, path, 1, dev, sizeof(dev));
	int fsfd = fsopen(op->fstype, FSOPEN_CLOEXEC);
	if (fsfd < 0)
		die("fsopen", op->fstype, errno);
	if (fsconfig(fsfd, FSCONFIG_SET_STRING, "source", dev, 0) < 0)
		die_fs(fsfd, "fsconfig source", dev, errno);
	if (fsconfig(fsfd, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0)
		die_fs(fsfd, "mount perNodeCache", path, errno);
	op->tree = fsmount(fsfd, FSMOUNT_CLOEXEC, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV);
	if (op->tree < 0)
		die("fsmount", path, errno);
	if (fchownat(op->tree, "", op->uid, op->gid, AT_EMPTY_PATH) < 0)
		die("chown perNodeCache root", op->target, errno);
	if (unlink(path) < 0)
		die("unlink perNodeCache backing file", path, errno);
	pending_unlink[0] = '\0';
	if (close(fsfd) < 0 || close(loop) < 0 || close(fd) < 0)
		die("close", path, errno);
}

/* ---- create-env: the scaffold ---- */

static int fs_mount(const char *type, const char *what, unsigned long mode, unsigned long size, unsigned int attr)
{
	int fsfd = fsopen(type, FSOPEN_CLOEXEC);
	if (fsfd < 0)
		die("fsopen", type, errno);
	char num[32];
	if (mode) {
		snprintf(num, sizeof(num), "%lo", mode);
		if (fsconfig(fsfd, FSCONFIG_SET_STRING, "mode", num, 0) < 0)
			die_fs(fsfd, "fsconfig mode", what, errno);
	}
	if (size) {
		snprintf(num, sizeof(num), "%lu", size);
		if (fsconfig(fsfd, FSCONFIG_SET_STRING, "size", num, 0) < 0)
			die_fs(fsfd, "fsconfig size", what, errno);
	}
	if (fsconfig(fsfd, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0)
		die_fs(fsfd, "create filesystem", what, errno);
	int mnt = fsmount(fsfd, FSMOUNT_CLOEXEC, attr);
	if (mnt < 0)
		die("fsmount", what, errno);
	if (close(fsfd) < 0)
		die("close", what, errno);
	return mnt;
}

static int is_scaffold_dir(const struct spec *s, const char *path)
{
	for (int i = 0; i < s->nscaffold; i++)
		if (!strcmp(s->scaffold[i], path))
			return 1;
	return 0;
}

static void copy_file(int imgdir, int scdir, const char *name, const struct stat *st, const char *path)
{
	int in = openat(imgdir, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (in < 0)
		die("open image file", path, errno);
	int out = openat(scdir, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (out < 0)
		die("create scaffold file", path, errno);
	for (off_t left = st->st_size; left > 0;) {
		ssize_t n = sendfile(out, in, NULL, (size_t)left);
		if (n < 0)
			die("copy image file", path, errno);
		if (n == 0)
			break;
		left -= n;
	}
	if (fchown(out, st->st_uid, st->st_gid) < 0 || fchmod(out, st->st_mode & 07777) < 0)
		die("chown/chmod scaffold file", path, errno);
	if (close(out) < 0 || close(in) < 0)
		die("close", path, errno);
}

static void bind_image_entry(int imgdir, int scdir, const char *name, const char *path)
{
	int tree = open_tree(imgdir, name, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_SYMLINK_NOFOLLOW);
	if (tree < 0)
		die("open_tree image", path, errno);
	if (move_mount(tree, "", scdir, name, MOVE_MOUNT_F_EMPTY_PATH) < 0)
		die("move_mount image", path, errno);
	if (close(tree) < 0)
		die("close", path, errno);
}

/*
 * Rebuilds one image directory on the scaffold: subdirectories are clones of the image
 * subtree (or rebuilt themselves when listed as scaffold dirs), symlinks and small files are
 * copied, large files are bound. Devices, fifos and sockets are left out.
 */
static void populate(const struct spec *s, int imgdir, int scdir, const char *dirpath)
{
	int dupfd = openat(imgdir, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dupfd < 0)
		die("open image directory", dirpath, errno);
	DIR *d = fdopendir(dupfd);
	if (!d)
		die("fdopendir", dirpath, errno);
	char path[4096];
	for (;;) {
		errno = 0;
		struct dirent *e = readdir(d);
		if (!e) {
			if (errno)
				die("readdir", dirpath, errno);
			break;
		}
		const char *name = e->d_name;
		if (!strcmp(name, ".") || !strcmp(name, "..") || !strcmp(name, IMAGE_STAGING))
			continue;
		snprintf(path, sizeof(path), "%s%s%s", dirpath, strcmp(dirpath, "/") ? "/" : "", name);
		struct stat st;
		if (fstatat(imgdir, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			die("stat image entry", path, errno);
		if (S_ISDIR(st.st_mode)) {
			if (mkdirat(scdir, name, 0755) < 0)
				die("mkdir scaffold", path, errno);
			if (is_scaffold_dir(s, path)) {
				int sub_img = openat(imgdir, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
				int sub_sc = openat(scdir, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
				if (sub_img < 0 || sub_sc < 0)
					die("open scaffold directory", path, errno);
				if (fchownat(sub_sc, "", st.st_uid, st.st_gid, AT_EMPTY_PATH) < 0 ||
				    fchmodat(scdir, name, st.st_mode & 07777, 0) < 0)
					die("chown/chmod scaffold directory", path, errno);
				populate(s, sub_img, sub_sc, path);
				if (close(sub_img) < 0 || close(sub_sc) < 0)
					die("close", path, errno);
			} else {
				bind_image_entry(imgdir, scdir, name, path);
			}
		} else if (S_ISLNK(st.st_mode)) {
			char text[4096];
			ssize_t n = readlinkat(imgdir, name, text, sizeof(text) - 1);
			if (n < 0)
				die("readlink image", path, errno);
			text[n] = '\0';
			if (symlinkat(text, scdir, name) < 0)
				die("symlink scaffold", path, errno);
		} else if (S_ISREG(st.st_mode)) {
			if (st.st_size <= COPY_LIMIT) {
				copy_file(imgdir, scdir, name, &st, path);
			} else {
				int fd = openat(scdir, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
				if (fd < 0 || close(fd) < 0)
					die("create scaffold mount point", path, errno);
				bind_image_entry(imgdir, scdir, name, path);
			}
		}
	}
	if (closedir(d) < 0)
		die("closedir", dirpath, errno);
}

/* ---- create-env: mounts on the new root ---- */

static int open_in_root(int root, const char *path, int flags)
{
	struct open_how how = {
		.flags = (uint64_t)(flags | O_CLOEXEC),
		.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
	};
	return (int)syscall(SYS_openat2, root, path, &how, sizeof(how));
}

/* The filesystems a symlink may live on and lead to: the scaffold and the image. */
static dev_t scaffold_dev, image_dev;

static int open_following(int root, const char *path, int flags)
{
	struct open_how how = {
		.flags = (uint64_t)(flags | O_CLOEXEC),
		.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
	};
	return (int)syscall(SYS_openat2, root, path, &how, sizeof(how));
}

static int on_image_or_scaffold(int fd)
{
	struct stat st;
	return fstat(fd, &st) == 0 && (st.st_dev == scaffold_dev || st.st_dev == image_dev);
}

/*
 * A component that is a symlink: followed inside the container root (RESOLVE_IN_ROOT: `..`
 * and absolute links stay in the root, so `/lib64 -> usr/lib64` works and `evil -> /etc`
 * means the container's /etc), only when follow is set, the link is in the image or on the
 * scaffold (never in a host directory bound in, whose content others control) and where it
 * leads is in the image or on the scaffold too (never into a host bind).
 */
static int follow_link(int root, int dir, const char *prefix, int flags, int follow, const char *target)
{
	if (!follow)
		die("resolve target (a symlink is on the path; refused for user volumes)", target, ELOOP);
	if (!on_image_or_scaffold(dir))
		die("resolve target (a symlink outside the image is on the path; refused)", target, ELOOP);
	int fd = open_following(root, prefix, flags);
	if (fd >= 0 && !on_image_or_scaffold(fd))
		die("resolve target (a symlink in the image leads out of the image; refused)", target, EXDEV);
	return fd;
}

/*
 * Parent directory of target, walked one component at a time from root, creating missing
 * directories (mkdir -p): that only succeeds on the scaffold, the image is read-only.
 */
static int open_parent(int root, const char *target, int follow, const char **name)
{
	char parent[4096];
	snprintf(parent, sizeof(parent), "%s", target);
	while (strlen(parent) > 1 && parent[strlen(parent) - 1] == '/')
		parent[strlen(parent) - 1] = '\0';
	char *slash = strrchr(parent, '/');
	*name = target + (slash - parent) + 1;
	if (!**name || !strcmp(*name, ".") || !strcmp(*name, ".."))
		die("resolve target", target, EINVAL);
	*slash = '\0';
	int dir = fcntl(root, F_DUPFD_CLOEXEC, 0);
	if (dir < 0)
		die("dup", "root", errno);
	char *save = NULL;
	for (char *c = strtok_r(parent, "/", &save); c; c = strtok_r(NULL, "/", &save)) {
		if (!strcmp(c, "."))
			continue;
		int next = open_in_root(dir, c, O_PATH | O_DIRECTORY);
		if (next < 0 && errno == ELOOP) {
			char prefix[4096];
			snprintf(prefix, sizeof(prefix), "%.*s", (int)(c - parent + (ptrdiff_t)strlen(c)), target);
			next = follow_link(root, dir, prefix, O_PATH | O_DIRECTORY, follow, target);
		}
		if (next < 0 && errno == ENOENT) {
			if (mkdirat(dir, c, 0755) < 0)
				die(errno == EROFS ? "create mount point parent (it would be in the image: create it there "
						     "or list its parent in scaffoldDirs)" : "create mount point parent",
				    target, errno);
			next = open_in_root(dir, c, O_PATH | O_DIRECTORY);
		}
		if (next < 0)
			die("resolve target", target, errno);
		if (close(dir) < 0)
			die("close", target, errno);
		dir = next;
	}
	return dir;
}

static void remove_existing(int dir, const char *name, const char *target)
{
	struct stat st;
	if (fstatat(dir, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
		if (errno == ENOENT)
			return;
		die("stat", target, errno);
	}
	if (S_ISDIR(st.st_mode))
		die("replace", target, EISDIR);
	if (unlinkat(dir, name, 0) < 0)
		die(errno == EROFS ? "replace (the directory is in the image: list it in scaffoldDirs)" : "replace",
		    target, errno);
}

/* Creates the mount point when missing, then moves the detached mount tree onto it. */
static void attach(int root, int tree, const char *target, int follow)
{
	struct stat st;
	if (fstat(tree, &st) < 0)
		die("fstat mount", target, errno);
	const char *name;
	int parent = open_parent(root, target, follow, &name);
	struct stat cur;
	if (fstatat(parent, name, &cur, AT_SYMLINK_NOFOLLOW) < 0) {
		if (errno != ENOENT)
			die("stat mount point", target, errno);
		int rc;
		if (S_ISDIR(st.st_mode)) {
			rc = mkdirat(parent, name, 0755);
		} else {
			rc = openat(parent, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
			if (rc >= 0)
				rc = close(rc);
		}
		if (rc < 0)
			die(errno == EROFS ? "create mount point (the parent is in the image: create it there "
					     "or list the parent in scaffoldDirs)" : "create mount point",
			    target, errno);
	}
	int at = open_in_root(parent, name, O_PATH);
	if (at < 0 && errno == ELOOP)
		at = follow_link(root, parent, target, O_PATH, follow, target);
	if (at < 0)
		die("resolve target", target, errno);
	if (move_mount(tree, "", at, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) < 0)
		die("move_mount", target, errno);
	if (close(at) < 0 || close(parent) < 0 || close(tree) < 0)
		die("close", target, errno);
}

static void write_file(int root, const struct op *op)
{
	const char *name;
	int parent = open_parent(root, op->target, 1, &name);
	remove_existing(parent, name, op->target);
	int fd = openat(parent, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		die("create file", op->target, errno);
	size_t len = strlen(op->source);
	for (size_t off = 0; off < len;) {
		ssize_t n = write(fd, op->source + off, len - off);
		if (n < 0)
			die("write file", op->target, errno);
		off += (size_t)n;
	}
	if (fchmod(fd, (mode_t)op->mode) < 0)
		die("chmod file", op->target, errno);
	if (close(fd) < 0 || close(parent) < 0)
		die("close", op->target, errno);
}

/* Upstream's sitePreMountHook/sitePostMountHook: `/bin/sh SCRIPT` as root, cwd = the new root. */
static void run_hook(int root, const struct op *op)
{
	const char *argv[] = { "/bin/sh", op->source, NULL };
	char last[512], why[1024], what[1200];
	int status = run_program(argv, root, last, sizeof(last));
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return;
	describe_failure(status, last, why, sizeof(why));
	snprintf(what, sizeof(what), "%s %s", op->target, op->source);
	die(what, why, 0);
}

static void apply(int root, struct op *op)
{
	const char *name;
	int parent, mnt;
	switch (op->kind) {
	case OP_BIND:
	case OP_CACHE:
		/* User volumes (and caches) never follow symlinks: the /etc rules on their targets hold. */
		attach(root, op->tree, op->target, op->kind == OP_BIND && !op->as_user);
		op->tree = -1;
		break;
	case OP_FILE:
		write_file(root, op);
		break;
	case OP_SYMLINK:
		parent = open_parent(root, op->target, 1, &name);
		remove_existing(parent, name, op->target);
		if (symlinkat(op->source, parent, name) < 0 || close(parent) < 0)
			die("symlink", op->target, errno);
		break;
	case OP_DIR:
		parent = open_parent(root, op->target, 1, &name);
		if (mkdirat(parent, name, (mode_t)op->mode) < 0 && errno != EEXIST)
			die("mkdir", op->target, errno);
		if (fchmodat(parent, name, (mode_t)op->mode, AT_SYMLINK_NOFOLLOW) < 0 && errno != EOPNOTSUPP)
			die("chmod", op->target, errno);
		if (close(parent) < 0)
			die("close", op->target, errno);
		break;
	case OP_TMPFS:
		mnt = fs_mount("tmpfs", op->target, op->mode ? op->mode : 01777, op->size, op->attr);
		attach(root, mnt, op->target, 1);
		break;
	case OP_PROC:
		mnt = fs_mount("proc", op->target, 0, 0, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC);
		attach(root, mnt, op->target, 1);
		break;
	case OP_HOOK:
		run_hook(root, op);
		break;
	}
}

/* ---- create-env: hand over to the user ---- */

static void write_proc(int procfd, pid_t pid, const char *file, const char *text)
{
	char path[64];
	snprintf(path, sizeof(path), "%d/%s", pid, file);
	int fd = openat(procfd, path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		die("open /proc", path, errno);
	if (write(fd, text, strlen(text)) != (ssize_t)strlen(text))
		die("write /proc", path, errno);
	if (close(fd) < 0)
		die("close /proc", path, errno);
}

/* The child becomes the user and copies the mount namespace into its own user namespace. */
static void become_user(const struct spec *s, int procfd, int image_fd, int ready_w, int go_r)
{
	report_fd = ready_w;
	if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0)
		die("prctl", "PR_SET_PDEATHSIG", errno);
	/* Nothing of root's (reply socket, image mount, host /proc) stays open as the user. */
	int reply = result_fd;
	result_fd = -1;
	if (close(reply) < 0 || close(image_fd) < 0 || close(procfd) < 0)
		die("close", "root fds before becoming the user", errno);
	if (setgroups((size_t)s->ngroups, s->groups) < 0)
		die("setgroups", "user groups", errno);
	if (setresgid(s->gid, s->gid, s->gid) < 0)
		die("setresgid", "user gid", errno);
	if (setresuid(s->uid, s->uid, s->uid) < 0)
		die("setresuid", "user uid", errno);
	/* The copy made here marks every mount MNT_LOCKED: the user cannot undo any of them. */
	if (unshare(CLONE_NEWUSER | CLONE_NEWNS) < 0)
		die("unshare", "CLONE_NEWUSER|CLONE_NEWNS", errno);
	if (write(ready_w, "r", 1) != 1)
		die("write", "ready pipe", errno);
	char c;
	if (read(go_r, &c, 1) < 0)
		die("read", "go pipe", errno);
	_exit(0);
}

static int cmp_gid(const void *a, const void *b)
{
	gid_t x = *(const gid_t *)a, y = *(const gid_t *)b;
	return x < y ? -1 : x > y;
}

static void map_user(const struct spec *s, int procfd, pid_t pid)
{
	char line[64];
	write_proc(procfd, pid, "setgroups", "deny");
	snprintf(line, sizeof(line), "%u %u 1\n", s->uid, s->uid);
	write_proc(procfd, pid, "uid_map", line);
	gid_t sorted[MAX_GROUPS];
	memcpy(sorted, s->groups, sizeof(gid_t) * (size_t)s->ngroups);
	qsort(sorted, (size_t)s->ngroups, sizeof(gid_t), cmp_gid);
	char *map = malloc((size_t)s->ngroups * 40 + 1);
	if (!map)
		die("gid_map", "out of memory", ENOMEM);
	size_t off = 0;
	for (int i = 0; i < s->ngroups; i++) {
		if (sorted[i] == 0 || (i > 0 && sorted[i] == sorted[i - 1]))
			continue;
		off += (size_t)sprintf(map + off, "%u %u 1\n", sorted[i], sorted[i]);
	}
	write_proc(procfd, pid, "gid_map", map);
	free(map);
}

static int open_ns(int procfd, pid_t pid, const char *ns)
{
	char path[64];
	snprintf(path, sizeof(path), "%d/ns/%s", pid, ns);
	int fd = openat(procfd, path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		die("open namespace", path, errno);
	return fd;
}

static long elapsed_us(const struct timespec *since)
{
	struct timespec now;
	if (clock_gettime(CLOCK_MONOTONIC, &now) < 0)
		die("clock_gettime", "CLOCK_MONOTONIC", errno);
	return (now.tv_sec - since->tv_sec) * 1000000L + (now.tv_nsec - since->tv_nsec) / 1000;
}

/* The staging directory: made once, root's own, so nobody can swap it for a symlink. */
static void ensure_staging(void)
{
	if (mkdir(STAGING, 0700) < 0 && errno != EEXIST)
		die("mkdir staging directory", STAGING, errno);
	struct stat st;
	if (lstat(STAGING, &st) < 0)
		die("stat staging directory", STAGING, errno);
	if (!S_ISDIR(st.st_mode) || st.st_uid != 0 || (st.st_mode & 022))
		die("staging directory is not a root-owned directory writable only by root", STAGING, 0);
}

static int cmd_create_env(int spec_fd, int image_fd)
{
	static struct spec s;
	struct timespec started;
	if (clock_gettime(CLOCK_MONOTONIC, &started) < 0)
		die("clock_gettime", "CLOCK_MONOTONIC", errno);
	size_t len;
	char *data = read_all(spec_fd, &len);
	if (close(spec_fd) < 0)
		die("close", "spec", errno);
	parse_spec(data, len, &s);
	for (int i = 0; i < s.ngroups; i++)
		if (s.groups[i] == 0)
			die("spec", "refusing group 0", EPERM);

	int procfd = open("/proc", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (procfd < 0)
		die("open", "/proc", errno);
	int image = open_tree(image_fd, "", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_EMPTY_PATH);
	if (image < 0)
		die("open_tree image mount", "the image fd", errno);
	for (int i = 0; i < s.nops; i++) {
		if (s.ops[i].kind == OP_BIND)
			clone_source(&s, &s.ops[i]);
		else if (s.ops[i].kind == OP_CACHE)
			make_cache(&s.ops[i]);
	}

	ensure_staging();
	if (unshare(CLONE_NEWNS) < 0)
		die("unshare", "CLONE_NEWNS", errno);
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
		die("make rprivate", "/", errno);

	int root = fs_mount("tmpfs", "scaffold", 0755, 64ul << 20, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV);
	if (move_mount(root, "", AT_FDCWD, STAGING, MOVE_MOUNT_F_EMPTY_PATH) < 0)
		die("move_mount scaffold", STAGING, errno);
	if (mkdirat(root, IMAGE_STAGING, 0700) < 0)
		die("mkdir", IMAGE_STAGING, errno);
	struct stat devs;
	if (fstat(root, &devs) < 0)
		die("fstat", "scaffold", errno);
	scaffold_dev = devs.st_dev;
	if (fstat(image, &devs) < 0)
		die("fstat", "image", errno);
	image_dev = devs.st_dev;
	if (move_mount(image, "", root, IMAGE_STAGING, MOVE_MOUNT_F_EMPTY_PATH) < 0)
		die("move_mount image", IMAGE_STAGING, errno);
	populate(&s, image, root, "/");
	if (umount2(STAGING "/" IMAGE_STAGING, MNT_DETACH | UMOUNT_NOFOLLOW) < 0)
		die("umount", STAGING "/" IMAGE_STAGING, errno);
	if (close(image) < 0 || unlinkat(root, IMAGE_STAGING, AT_REMOVEDIR) < 0)
		die("remove", IMAGE_STAGING, errno);

	for (int i = 0; i < s.nops; i++)
		apply(root, &s.ops[i]);

	struct mount_attr ro = { .attr_set = MOUNT_ATTR_RDONLY };
	if (mount_setattr(root, "", AT_EMPTY_PATH, &ro, sizeof(ro)) < 0)
		die("make scaffold read-only", "/", errno);
	if (fchdir(root) < 0)
		die("fchdir", "scaffold", errno);
	if (syscall(SYS_pivot_root, ".", ".") < 0)
		die("pivot_root", "scaffold", errno);
	if (umount2(".", MNT_DETACH) < 0)
		die("umount old root", ".", errno);
	if (chdir("/") < 0 || close(root) < 0)
		die("chdir", "/", errno);

	int ready[2], go[2];
	if (pipe2(ready, O_CLOEXEC) < 0 || pipe2(go, O_CLOEXEC) < 0)
		die("pipe2", "user handover", errno);
	pid_t pid = fork();
	if (pid < 0)
		die("fork", "user handover", errno);
	if (pid == 0) {
		close(ready[0]);
		close(go[1]);
		become_user(&s, procfd, image_fd, ready[1], go[0]);
	}
	if (close(ready[1]) < 0 || close(go[0]) < 0)
		die("close", "pipes", errno);
	char said[3072];
	ssize_t n = read(ready[0], said, sizeof(said) - 1);
	if (n != 1 || said[0] != 'r') {
		int status;
		waitpid(pid, &status, 0);
		if (n > 1) {
			said[n] = '\0';
			fail(said);
		}
		die("user handover", "the child failed", n < 0 ? errno : 0);
	}
	map_user(&s, procfd, pid);
	int fds[2] = { open_ns(procfd, pid, "user"), open_ns(procfd, pid, "mnt") };
	if (close(go[1]) < 0)
		die("close", "go pipe", errno);
	int status;
	if (waitpid(pid, &status, 0) < 0)
		die("waitpid", "user handover", errno);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		die("user handover", "the child failed", 0);
	char text[64];
	snprintf(text, sizeof(text), "ok us=%ld", elapsed_us(&started));
	send_result(text, fds, 2);
	return 0;
}

/* ---- serve: one process per daemon, one forked child per request ---- */

static void serve_request(const char *text, const int *fds, int nfds)
{
	if (close(CONTROL_FD) < 0)
		die("close", "control socket", errno);
	signal(SIGCHLD, SIG_DFL);
	if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0)
		die("prctl", "PR_SET_PDEATHSIG", errno);
	alarm(REQUEST_TIMEOUT_S);
	result_fd = fds[0];
	if (!strncmp(text, "attach-image ", 13) && nfds == 1)
		exit(cmd_attach_image(text + 13));
	if (!strcmp(text, "create-env") && nfds == 3)
		exit(cmd_create_env(fds[1], fds[2]));
	die("unknown request", text, EINVAL);
}

static int serve(pid_t daemon)
{
	/* The daemon's death (even kill -9) takes this server with it: no orphan stays root. */
	if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0)
		die("prctl", "PR_SET_PDEATHSIG", errno);
	if (getppid() != daemon)
		return 0;
	/* Children are not waited for here: the kernel reaps them. */
	signal(SIGCHLD, SIG_IGN);
	for (;;) {
		char text[8192];
		union {
			struct cmsghdr h;
			char space[CMSG_SPACE(sizeof(int) * 3)];
		} ctl;
		struct iovec iov = { text, sizeof(text) - 1 };
		struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.space,
				      .msg_controllen = sizeof(ctl.space) };
		ssize_t n = recvmsg(CONTROL_FD, &msg, MSG_CMSG_CLOEXEC);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? 1 : 0; /* the daemon closed its end */
		text[n] = '\0';
		int fds[3], nfds = 0;
		for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
			if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
				continue;
			int count = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
			for (int i = 0; i < count && nfds < 3; i++)
				memcpy(&fds[nfds++], CMSG_DATA(c) + sizeof(int) * (size_t)i, sizeof(int));
		}
		if (nfds == 0 || (msg.msg_flags & (MSG_CTRUNC | MSG_TRUNC))) {
			for (int i = 0; i < nfds; i++)
				close(fds[i]);
			fprintf(stderr, "shifter-nshelper: serve: dropped a malformed request\n");
			continue;
		}
		pid_t pid = fork();
		if (pid == 0)
			serve_request(text, fds, nfds);
		if (pid < 0) {
			int err = errno;
			char line[256];
			snprintf(line, sizeof(line), "error shifter-nshelper: fork: %s", strerror(err));
			struct iovec out = { line, strlen(line) };
			struct msghdr reply = { .msg_iov = &out, .msg_iovlen = 1 };
			sendmsg(fds[0], &reply, MSG_NOSIGNAL);
		}
		for (int i = 0; i < nfds; i++)
			close(fds[i]);
	}
}

int main(int argc, char **argv)
{
	if (argc == 3 && !strcmp(argv[1], "serve"))
		return serve((pid_t)atoi(argv[2]));
	fprintf(stderr, "usage: shifter-nshelper serve <daemon pid> (fd 3: control socket; see native/README.md)\n");
	return 2;
}
