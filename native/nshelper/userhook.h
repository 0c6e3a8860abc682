/* "run-userhook": one module userhook, as the user, inside an environment the daemon holds. */
#ifndef NSHELPER_USERHOOK_H
#define NSHELPER_USERHOOK_H

/*
 * body: NUL-terminated tokens `uid N gid N groups G1,G2 cwd DIR module NAME script PATH seconds N
 * env K=V ... end`. Answers "ok" plus the hook's log lines, without fds.
 */
void cmd_run_userhook(int body_fd, int userns_fd, int mntns_fd);

#endif
