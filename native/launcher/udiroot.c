#define _GNU_SOURCE
#include "udiroot.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *trim(char *s)
{
	while (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n' || *s == '\v' || *s == '\f')
		s++;
	size_t n = strlen(s);
	while (n > 0 && strchr(" \t\r\n\v\f", s[n - 1]))
		s[--n] = '\0';
	return s;
}

/* Drops a trailing `\` (and the blanks before it); returns whether there was one. */
static int continues(char *s)
{
	size_t n = strlen(s);
	if (n == 0 || s[n - 1] != '\\')
		return 0;
	s[n - 1] = '\0';
	char *t = trim(s);
	memmove(s, t, strlen(t) + 1);
	return 1;
}

int udiroot_value(const char *path, const char *key, char *out, size_t len)
{
	FILE *f = fopen(path, "re");
	if (!f)
		return errno == ENOENT ? 0 : -1;
	char *line = NULL;
	size_t cap = 0;
	int found = 0, in_value = 0, pending = 0, err = 0;
	size_t fill = 0;
	while (getline(&line, &cap, f) >= 0) {
		char *s = trim(line);
		if (pending) {
			/* A continuation line belongs to the key above it, whatever it looks like. */
			pending = continues(s);
			if (in_value && *s && !err) {
				int n = snprintf(out + fill, len - fill, "%s%s", fill ? " " : "", s);
				if (n < 0 || (size_t)n >= len - fill)
					err = ENAMETOOLONG;
				else
					fill += (size_t)n;
			}
			continue;
		}
		char *eq = strchr(s, '=');
		if (!*s || *s == '#' || !eq)
			continue;
		*eq = '\0';
		char *value = trim(eq + 1);
		pending = continues(value);
		in_value = strcmp(trim(s), key) == 0;
		if (in_value) {
			found = 1;
			out[0] = '\0';
			err = 0;
			fill = strlen(value);
			if (fill >= len)
				err = ENAMETOOLONG;
			else
				memcpy(out, value, fill + 1);
		}
	}
	if (ferror(f) && !err)
		err = errno ? errno : EIO;
	free(line);
	fclose(f);
	if (err) {
		errno = err;
		return -1;
	}
	/* An empty value is no value: the default applies. */
	return found && out[0];
}

int udiroot_shifterd_socket(const char *path, char *out, size_t len)
{
	return udiroot_value(path, "shifterdSocket", out, len);
}
