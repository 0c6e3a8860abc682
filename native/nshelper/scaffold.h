/* The scaffold: the tmpfs that becomes the container root, rebuilt from the image root. */
#ifndef NSHELPER_SCAFFOLD_H
#define NSHELPER_SCAFFOLD_H

#include "spec.h"

/* Where the image clone sits on the scaffold while the scaffold is populated. */
#define IMAGE_STAGING ".shifter-image-staging"

/*
 * Rebuilds one image directory on the scaffold: subdirectories are clones of the image
 * subtree (or rebuilt themselves when listed as scaffold dirs), symlinks and small files are
 * copied, large files are bound. Devices, fifos and sockets are left out.
 */
void populate(const struct spec *s, int imgdir, int scdir, const char *dirpath);

#endif
