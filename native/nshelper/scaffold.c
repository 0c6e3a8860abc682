#define _GNU_SOURCE
#include "scaffold.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <unistd.h>

#include "failure.h"

#define COPY_LIMIT (1024 * 1024)

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
		die(errno, "open image file: %s", path);
	int out = openat(scdir, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (out < 0)
		die(errno, "create scaffold file: %s", path);
	for (off_t left = st->st_size; left > 0;) {
		ssize_t n = sendfile(out, in, NULL, (size_t)left);
		if (n < 0)
			die(errno, "copy image file: %s", path);
		if (n == 0)
			break;
		left -= n;
	}
	if (fchown(out, st->st_uid, st->st_gid) < 0 || fchmod(out, st->st_mode & 07777) < 0)
		die(errno, "chown/chmod scaffold file: %s", path);
	if (close(out) < 0 || close(in) < 0)
		die(errno, "close: %s", path);
}

static void bind_image_entry(int imgdir, int scdir, const char *name, const char *path)
{
	int tree = open_tree(imgdir, name, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_SYMLINK_NOFOLLOW | AT_RECURSIVE);
	if (tree < 0)
		die(errno, "open_tree image: %s", path);
	if (move_mount(tree, "", scdir, name, MOVE_MOUNT_F_EMPTY_PATH) < 0)
		die(errno, "move_mount image: %s", path);
	if (close(tree) < 0)
		die(errno, "close: %s", path);
}

void populate(const struct spec *s, int imgdir, int scdir, const char *dirpath)
{
	int dupfd = openat(imgdir, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dupfd < 0)
		die(errno, "open image directory: %s", dirpath);
	DIR *d = fdopendir(dupfd);
	if (!d)
		die(errno, "fdopendir: %s", dirpath);
	char path[4096];
	for (;;) {
		errno = 0;
		struct dirent *e = readdir(d);
		if (!e) {
			if (errno)
				die(errno, "readdir: %s", dirpath);
			break;
		}
		const char *name = e->d_name;
		if (!strcmp(name, ".") || !strcmp(name, "..") || !strcmp(name, IMAGE_STAGING))
			continue;
		snprintf(path, sizeof(path), "%s%s%s", dirpath, strcmp(dirpath, "/") ? "/" : "", name);
		struct stat st;
		if (fstatat(imgdir, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			die(errno, "stat image entry: %s", path);
		if (S_ISDIR(st.st_mode)) {
			if (mkdirat(scdir, name, 0755) < 0)
				die(errno, "mkdir scaffold: %s", path);
			if (is_scaffold_dir(s, path)) {
				int sub_img = openat(imgdir, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
				int sub_sc = openat(scdir, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
				if (sub_img < 0 || sub_sc < 0)
					die(errno, "open scaffold directory: %s", path);
				if (fchownat(sub_sc, "", st.st_uid, st.st_gid, AT_EMPTY_PATH) < 0 ||
				    fchmodat(scdir, name, st.st_mode & 07777, 0) < 0)
					die(errno, "chown/chmod scaffold directory: %s", path);
				populate(s, sub_img, sub_sc, path);
				if (close(sub_img) < 0 || close(sub_sc) < 0)
					die(errno, "close: %s", path);
			} else {
				bind_image_entry(imgdir, scdir, name, path);
			}
		} else if (S_ISLNK(st.st_mode)) {
			char text[4096];
			ssize_t n = readlinkat(imgdir, name, text, sizeof(text) - 1);
			if (n < 0)
				die(errno, "readlink image: %s", path);
			text[n] = '\0';
			if (symlinkat(text, scdir, name) < 0)
				die(errno, "symlink scaffold: %s", path);
		} else if (S_ISREG(st.st_mode)) {
			if (st.st_size <= COPY_LIMIT) {
				copy_file(imgdir, scdir, name, &st, path);
			} else {
				int fd = openat(scdir, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
				if (fd < 0 || close(fd) < 0)
					die(errno, "create scaffold mount point: %s", path);
				bind_image_entry(imgdir, scdir, name, path);
			}
		}
	}
	if (closedir(d) < 0)
		die(errno, "closedir: %s", dirpath);
}
