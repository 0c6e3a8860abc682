/* "create-env": builds one locked environment (native/README.md, steps 1-6). */
#ifndef NSHELPER_CREATE_ENV_H
#define NSHELPER_CREATE_ENV_H

/* Answers "ok us=<microseconds it took>" + [user ns fd, mnt ns fd]. */
void cmd_create_env(int spec_fd, int image_fd);

#endif
