/* A new filesystem as a detached mount: the one fsopen -> fsconfig -> fsmount sequence. */
#ifndef NSHELPER_FILESYSTEM_H
#define NSHELPER_FILESYSTEM_H

struct fs_param {
	const char *key;
	const char *value; /* NULL: a flag (e.g. "ro") */
};

struct new_fs {
	const char *type;
	const struct fs_param *params; /* ends with a NULL key; NULL: none */
	const char *params_of;         /* named when a parameter is refused: the device, or what is made */
	const char *create_step;       /* named when the superblock cannot be made */
	const char *subject;           /* named when creating or mounting fails */
	unsigned int attr;             /* MOUNT_ATTR_* of the mount */
};

/* The detached mount fd (O_CLOEXEC); fails the request with the kernel's own explanation. */
int new_fs_mount(const struct new_fs *fs);

/* A tmpfs or proc instance named what in failures; mode and size 0: the kernel's defaults. */
int new_virtual_fs(const char *type, const char *what, unsigned long mode, unsigned long size, unsigned int attr);

#endif
