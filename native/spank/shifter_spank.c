/*
 * shifter_spank.so: the Slurm side of shifter. Adds --image, --volume and --module to sbatch,
 * salloc and srun (--shifter.image etc. with the plugin argument long_options). At submit
 * (allocator and local contexts) it runs the job-check program, which applies the rules shifterd
 * applies to `shifter` (volumes, modules) and resolves the image once through the gateway; the
 * pinned id and the checked options it prints go to the job's environment and to the job
 * control environment (SPANK_SHIFTER_* in the prolog and epilog). The rules live in one place,
 * the TypeScript shifterd runs: this plugin does not parse volumes or images itself.
 *
 * plugstack.conf: required /path/shifter_spank.so [shifter_config=udiRoot.conf] [long_options]
 *                 [job_check=/path/shifter-job-check] [job_env=/path/shifter-job-env]
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <slurm/spank.h>

#include "../common/launch-client.h"
#include "../launcher/udiroot.h"

SPANK_PLUGIN(shifter, 1);

#ifndef SHIFTER_UDIROOT_CONF
#define SHIFTER_UDIROOT_CONF "/etc/shifter/udiRoot.conf"
#endif
#ifndef SHIFTER_JOB_CHECK
#define SHIFTER_JOB_CHECK "/usr/libexec/shifter/shifter-job-check"
#endif
#ifndef SHIFTER_JOB_ENV
#define SHIFTER_JOB_ENV "/usr/libexec/shifter/shifter-job-env"
#endif
#define DEFAULT_SOCKET "/run/shifter/shifterd.sock"

/*
 * srun puts this in the step's environment when --image was given on its own command line: the
 * step's tasks enter the container (slurm_spank_task_init). Not set for options a step inherits
 * from its job, so `srun shifter CMD` in an `sbatch --image` job runs the launcher on the host.
 */
#define ENTER_VARIABLE "SHIFTER_SRUN_ENTER"

/* The job check prints at most a few short lines; anything longer is a bug, not a job. */
#define CHECK_OUTPUT_MAX 65536

static const char *config_path = SHIFTER_UDIROOT_CONF;
static const char *job_check_path = SHIFTER_JOB_CHECK;
static const char *job_env_path = SHIFTER_JOB_ENV;
static int long_options;

static char *opt_image;
static char *opt_volume;
static char *opt_module;

enum { OPT_IMAGE, OPT_VOLUME, OPT_MODULE, OPT_COUNT };

/*
 * srun inside a job sees the job's options again: Slurm replays the ones given to sbatch or
 * salloc from the environment (SLURM_SPANK__SLURM_SPANK_OPTION_shifter_<name>) before the
 * command line's. Per option: whether the replayed value was seen, and whether srun's own
 * command line gave one.
 */
static int replayed_seen[OPT_COUNT];
static int on_command_line[OPT_COUNT];

/* The variables the job check may set; anything else in its output is refused. */
static const char *const exported_names[] = { "SHIFTER_IMAGE", "SHIFTER_IMAGETYPE", "SHIFTER_IMAGEREQUEST",
	                                      "SHIFTER_VOLUME", "SHIFTER_MODULE" };

static int replace_string(char **slot, const char *value)
{
	char *copy = strdup(value);
	if (copy == NULL) {
		slurm_error("shifter: out of memory");
		return -1;
	}
	free(*slot);
	*slot = copy;
	return 0;
}

/* --volume is repeatable; the maps are kept as one `;`-separated list, as upstream. */
static int append_volume(const char *value)
{
	size_t old = opt_volume == NULL ? 0 : strlen(opt_volume);
	char *joined = malloc(old + strlen(value) + 2);
	if (joined == NULL) {
		slurm_error("shifter: out of memory");
		return -1;
	}
	if (old > 0)
		sprintf(joined, "%s;%s", opt_volume, value);
	else
		strcpy(joined, value);
	free(opt_volume);
	opt_volume = joined;
	return 0;
}

static const char *option_name(int val);

/* The job's value of an option as Slurm replays it to a step, or NULL. */
static const char *replayed_value(int val)
{
	char name[128];
	int n = snprintf(name, sizeof(name), "SLURM_SPANK__SLURM_SPANK_OPTION_shifter_%s", option_name(val));
	if (n < 0 || (size_t)n >= sizeof(name))
		return NULL;
	for (char *c = name + strlen("SLURM_SPANK__SLURM_SPANK_OPTION_shifter_"); *c; c++)
		if (!(*c >= 'a' && *c <= 'z') && !(*c >= 'A' && *c <= 'Z') && !(*c >= '0' && *c <= '9'))
			*c = '_';
	return getenv(name);
}

static void note_origin(int val, const char *optarg)
{
	if (spank_context() != S_CTX_LOCAL || val < 0 || val >= OPT_COUNT)
		return;
	const char *replayed = replayed_value(val);
	if (!replayed_seen[val] && replayed != NULL && strcmp(replayed, optarg) == 0)
		replayed_seen[val] = 1;
	else
		on_command_line[val] = 1;
}

static int option_cb(int val, const char *optarg, int remote)
{
	(void)remote;
	if (optarg == NULL)
		optarg = "";
	note_origin(val, optarg);
	switch (val) {
	case OPT_IMAGE:
		return replace_string(&opt_image, optarg);
	case OPT_VOLUME:
		return append_volume(optarg);
	case OPT_MODULE:
		return replace_string(&opt_module, optarg);
	default:
		return -1;
	}
}

static struct spank_option options_short[] = {
	{ "image", "image", "run the job's shifter commands in this image (e.g. docker:ubuntu:22.04)", 1, OPT_IMAGE,
	  option_cb },
	{ "volume", "from:to[:ro]", "bind a host directory in the container; repeatable or ';'-separated", 1,
	  OPT_VOLUME, option_cb },
	{ "module", "m1,m2|none", "site shifter modules to load instead of the defaults", 1, OPT_MODULE, option_cb },
};

static struct spank_option options_long[] = {
	{ "shifter.image", "image", "run the job's shifter commands in this image (e.g. docker:ubuntu:22.04)", 1,
	  OPT_IMAGE, option_cb },
	{ "shifter.volume", "from:to[:ro]", "bind a host directory in the container; repeatable or ';'-separated", 1,
	  OPT_VOLUME, option_cb },
	{ "shifter.module", "m1,m2|none", "site shifter modules to load instead of the defaults", 1, OPT_MODULE,
	  option_cb },
};

static const char *option_name(int val)
{
	return (long_options ? options_long : options_short)[val].name;
}

static int parse_plugin_args(int ac, char **av)
{
	for (int i = 0; i < ac; i++) {
		if (strncmp(av[i], "shifter_config=", 15) == 0 && av[i][15] == '/') {
			config_path = av[i] + 15;
		} else if (strncmp(av[i], "job_check=", 10) == 0 && av[i][10] == '/') {
			job_check_path = av[i] + 10;
		} else if (strncmp(av[i], "job_env=", 8) == 0 && av[i][8] == '/') {
			job_env_path = av[i] + 8;
		} else if (strcmp(av[i], "long_options") == 0) {
			long_options = 1;
		} else {
			slurm_error(
				"shifter: plugin argument '%s' is not understood (shifter_config=/abs/udiRoot.conf, "
				"job_check=/abs/path, job_env=/abs/path, long_options); fix plugstack.conf",
				av[i]);
			return -1;
		}
	}
	return 0;
}

int slurm_spank_init(spank_t sp, int ac, char **av)
{
	spank_context_t ctx = spank_context();
	if (parse_plugin_args(ac, av) != 0)
		return -1;
	if (ctx != S_CTX_ALLOCATOR && ctx != S_CTX_LOCAL && ctx != S_CTX_REMOTE)
		return 0;
	/* Registered here, not through a static spank_options table, which sbatch and salloc ignore. */
	struct spank_option *table = long_options ? options_long : options_short;
	for (size_t i = 0; i < sizeof(options_short) / sizeof(options_short[0]); i++) {
		if (spank_option_register(sp, &table[i]) != ESPANK_SUCCESS) {
			slurm_error("shifter: cannot register the option --%s", table[i].name);
			return -1;
		}
	}
	return 0;
}

static int is_exported_name(const char *name)
{
	for (size_t i = 0; i < sizeof(exported_names) / sizeof(exported_names[0]); i++) {
		if (strcmp(name, exported_names[i]) == 0)
			return 1;
	}
	return 0;
}

/*
 * Runs argv[0] and collects what it prints on stdout (and stderr too with capture_stderr; else
 * stderr passes through, e.g. to the user's terminal at submit). Returns its exit status, or -1.
 */
static int run_program(const char *const *argv, char *out, size_t out_size, int capture_stderr)
{
	int fds[2];
	if (pipe2(fds, O_CLOEXEC) != 0) {
		slurm_error("shifter: pipe: %s", strerror(errno));
		return -1;
	}
	pid_t pid = fork();
	if (pid < 0) {
		slurm_error("shifter: fork: %s", strerror(errno));
		close(fds[0]);
		close(fds[1]);
		return -1;
	}
	if (pid == 0) {
		signal(SIGPIPE, SIG_DFL);
		if (dup2(fds[1], STDOUT_FILENO) < 0 || (capture_stderr && dup2(fds[1], STDERR_FILENO) < 0))
			_exit(125);
		/* The prolog's environment may have no PATH; the programs are scripts that exec node. */
		setenv("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", 0);
		execv(argv[0], (char *const *)argv);
		dprintf(STDERR_FILENO, "shifter: cannot run %s: %s; check plugstack.conf\n", argv[0], strerror(errno));
		_exit(125);
	}
	close(fds[1]);
	size_t used = 0;
	int overflow = 0;
	for (;;) {
		char discard[4096];
		char *dst = used + 1 < out_size ? out + used : discard;
		size_t room = used + 1 < out_size ? out_size - 1 - used : sizeof(discard);
		ssize_t got = read(fds[0], dst, room);
		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0)
			break;
		if (dst == discard)
			overflow = 1;
		else
			used += (size_t)got;
	}
	out[used] = '\0';
	close(fds[0]);
	int status;
	while (waitpid(pid, &status, 0) < 0) {
		if (errno != EINTR) {
			slurm_error("shifter: waitpid: %s", strerror(errno));
			return -1;
		}
	}
	if (overflow) {
		slurm_error("shifter: %s printed more than %zu bytes", argv[0], out_size - 1);
		return -1;
	}
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* Runs the job check with the user's options; its stderr (the user's message) passes through. */
static int run_job_check(char *out, size_t out_size)
{
	const char *argv[10];
	int n = 0;
	argv[n++] = job_check_path;
	argv[n++] = "--config";
	argv[n++] = config_path;
	if (opt_image != NULL) {
		argv[n++] = "--image";
		argv[n++] = opt_image;
	}
	if (opt_volume != NULL) {
		argv[n++] = "--volume";
		argv[n++] = opt_volume;
	}
	if (opt_module != NULL) {
		argv[n++] = "--module";
		argv[n++] = opt_module;
	}
	argv[n] = NULL;
	return run_program(argv, out, out_size, 0) == 0 ? 0 : -1;
}

/* Each line of the job check's output is NAME=VALUE: set it for the tasks and for the prolog. */
static int export_checked(spank_t sp, char *output)
{
	char *save = NULL;
	for (char *line = strtok_r(output, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save)) {
		char *eq = strchr(line, '=');
		if (eq == NULL) {
			slurm_error("shifter: the job check printed '%s', not NAME=VALUE", line);
			return -1;
		}
		*eq = '\0';
		if (!is_exported_name(line)) {
			slurm_error("shifter: the job check printed the unexpected variable %s", line);
			return -1;
		}
		/*
		 * spank_setenv works only in slurmstepd; here the submit command's own environment is
		 * what the job inherits (--export=ALL, the default). The job control copy reaches the
		 * prolog as SPANK_<name> and the tasks as SLURM_SPANK_<name>, also with --export=NONE.
		 */
		if (setenv(line, eq + 1, 1) != 0) {
			slurm_error("shifter: cannot set %s: %s", line, strerror(errno));
			return -1;
		}
		if (spank_job_control_setenv(sp, line, eq + 1, 1) != ESPANK_SUCCESS) {
			slurm_error("shifter: cannot set %s in the job control environment", line);
			return -1;
		}
	}
	return 0;
}

/* What the job check exported at submit: inherited as is, or only as SLURM_SPANK_<name>. */
static const char *job_value(const char *name)
{
	const char *value = getenv(name);
	if (value != NULL)
		return value;
	char spank_name[64];
	snprintf(spank_name, sizeof(spank_name), "SLURM_SPANK_%s", name);
	return getenv(spank_name);
}

static int check_and_export(spank_t sp)
{
	char *output = malloc(CHECK_OUTPUT_MAX);
	if (output == NULL) {
		slurm_error("shifter: out of memory");
		return -1;
	}
	int rc = run_job_check(output, CHECK_OUTPUT_MAX);
	if (rc == 0)
		rc = export_checked(sp, output);
	free(output);
	return rc;
}

/*
 * srun. Options only replayed from the job were checked and pinned at submit: the job's
 * SHIFTER_* are already in this environment, and checking again would pin a tag anew. The
 * job's own image named again (`srun --image=<what the job asked for>`) keeps the job's pin.
 * Anything else given to srun is checked like a submit. --image on srun's command line makes
 * the step's tasks enter the container.
 */
static int step_options(spank_t sp)
{
	int own = on_command_line[OPT_IMAGE] || on_command_line[OPT_VOLUME] || on_command_line[OPT_MODULE];
	const char *pinned = job_value("SHIFTER_IMAGE");
	const char *request = job_value("SHIFTER_IMAGEREQUEST");
	int same_image = on_command_line[OPT_IMAGE] && opt_image != NULL && pinned != NULL && request != NULL &&
	                 strcmp(opt_image, request) == 0;
	if (own && !(same_image && !on_command_line[OPT_VOLUME] && !on_command_line[OPT_MODULE])) {
		if (check_and_export(sp) != 0)
			return -1;
	} else if (!own && pinned == NULL) {
		return check_and_export(sp);
	}
	if (on_command_line[OPT_IMAGE] && setenv(ENTER_VARIABLE, "1", 1) != 0) {
		slurm_error("shifter: cannot set %s: %s", ENTER_VARIABLE, strerror(errno));
		return -1;
	}
	return 0;
}

int slurm_spank_init_post_opt(spank_t sp, int ac, char **av)
{
	(void)ac;
	(void)av;
	spank_context_t ctx = spank_context();
	if (ctx != S_CTX_ALLOCATOR && ctx != S_CTX_LOCAL)
		return 0;
	if (opt_image == NULL && opt_volume == NULL && opt_module == NULL)
		return 0;
	if (ctx == S_CTX_LOCAL)
		return step_options(sp);
	return check_and_export(sp);
}

/* The launch socket, from the plugin's udiRoot.conf (not from the task's environment). */
static const char *launch_socket(char *buf, size_t len)
{
	int found = udiroot_shifterd_socket(config_path, buf, len);
	if (found < 0) {
		fprintf(stderr, "shifter: cannot read shifterdSocket from %s: %s\n", config_path, strerror(errno));
		return NULL;
	}
	return found ? buf : DEFAULT_SOCKET;
}

/* Whether cmd names a file in the container (searched in the container's PATH without a '/'). */
static int command_exists(const char *cmd, const char *path)
{
	if (strchr(cmd, '/'))
		return access(cmd, F_OK) == 0;
	if (*cmd == '\0')
		return 0;
	char full[PATH_MAX];
	for (const char *p = path;; p++) {
		const char *colon = strchrnul(p, ':');
		int n = colon == p ? snprintf(full, sizeof(full), "%s", cmd)
		                   : snprintf(full, sizeof(full), "%.*s/%s", (int)(colon - p), p, cmd);
		if (n > 0 && (size_t)n < sizeof(full) && access(full, F_OK) == 0)
			return 1;
		if (*colon == '\0')
			return 0;
		p = colon;
	}
}

static const char *env_value(char **env, const char *name, const char *fallback)
{
	size_t len = strlen(name);
	for (char **e = env; *e; e++)
		if (strncmp(*e, name, len) == 0 && (*e)[len] == '=')
			return *e + len + 1;
	return fallback;
}

/* Makes the task's environment the container's: what the reply lacks goes, the rest is set. */
static int apply_environment(spank_t sp, char **task_env, char **container_env)
{
	size_t count = 0;
	while (task_env[count])
		count++;
	char **names = calloc(count + 1, sizeof(char *));
	if (names == NULL)
		return -1;
	for (size_t i = 0; i < count; i++)
		names[i] = strndup(task_env[i], strcspn(task_env[i], "="));
	int rc = 0;
	for (size_t i = 0; i < count; i++) {
		if (names[i] == NULL)
			rc = -1;
		else if (env_value(container_env, names[i], NULL) == NULL &&
		         spank_unsetenv(sp, names[i]) != ESPANK_SUCCESS)
			rc = -1;
		free(names[i]);
	}
	free(names);
	for (char **e = container_env; rc == 0 && *e; e++) {
		char *eq = strchr(*e, '=');
		if (eq == NULL || eq == *e)
			continue;
		*eq = '\0';
		if (spank_setenv(sp, *e, eq + 1, 1) != ESPANK_SUCCESS)
			rc = -1;
		*eq = '=';
	}
	return rc;
}

/* The task exits here, as `shifter` would, with the message on the task's stderr. */
static NORETURN void task_fail(int code, const char *text, int err)
{
	if (err)
		fprintf(stderr, "shifter: %s: %s\n", text, strerror(err));
	else
		fprintf(stderr, "shifter: %s\n", text);
	fflush(stderr);
	_exit(code);
}

/*
 * `srun --image=X CMD` (remote context, in each task's process after Slurm made it the user's,
 * before Slurm execs CMD): the same launch request `shifter CMD` would make, from this process,
 * so shifterd knows the user from SO_PEERCRED and attaches the job's environment (SLURM_JOB_ID
 * and the pinned SHIFTER_IMAGE are in the task's environment). Then the same entry as the
 * launcher's, and the container's environment for Slurm's exec. A step running the launcher
 * itself (`srun --image=X shifter CMD`) is left to it.
 */
int slurm_spank_task_init(spank_t sp, int ac, char **av)
{
	(void)ac;
	(void)av;
	char marker[8];
	if (spank_getenv(sp, ENTER_VARIABLE, marker, sizeof(marker)) != ESPANK_SUCCESS)
		return 0;
	spank_unsetenv(sp, ENTER_VARIABLE);
	int argc = 0;
	char **argv = NULL;
	char **env = NULL;
	if (spank_get_item(sp, S_JOB_ARGV, &argc, &argv) != ESPANK_SUCCESS ||
	    spank_get_item(sp, S_JOB_ENV, &env) != ESPANK_SUCCESS || argc < 1)
		task_fail(1, "srun --image: the step's command or environment is not available", 0);
	const char *base = strrchr(argv[0], '/');
	if (strcmp(base ? base + 1 : argv[0], "shifter") == 0)
		return 0;
	if (geteuid() != getuid() || getuid() == 0)
		task_fail(1, "srun --image: the task does not run as the job's user", EPERM);
	char **request = calloc((size_t)argc + 3, sizeof(char *));
	if (request == NULL)
		task_fail(1, "srun --image: out of memory", ENOMEM);
	request[0] = "shifter";
	request[1] = "--";
	for (int i = 0; i < argc; i++)
		request[i + 2] = argv[i];
	char socket_path[PATH_MAX];
	const char *path = launch_socket(socket_path, sizeof(socket_path));
	if (path == NULL)
		task_fail(1, "srun --image: no launch socket", 0);
	char cwd[PATH_MAX];
	if (!getcwd(cwd, sizeof(cwd)))
		cwd[0] = '\0';
	struct launch_reply reply;
	struct launch_error e;
	if (launch_request(path, request, env, cwd, &reply, &e) < 0)
		task_fail(1, e.text, e.err);
	free(request);
	if (reply.kind == LAUNCH_REPLY_ERROR) {
		fwrite(reply.message, 1, reply.message_len, stderr);
		fflush(stderr);
		_exit(reply.exit_code == 0 ? 1 : reply.exit_code);
	}
	char warning[PATH_MAX + 256];
	if (launch_enter(&reply, warning, sizeof(warning), &e) < 0)
		task_fail(1, e.text, e.err);
	if (*warning)
		fprintf(stderr, "shifter: %s\n", warning);
	if (!command_exists(argv[0], env_value(reply.env, "PATH", "/usr/local/bin:/usr/bin:/bin"))) {
		char text[PATH_MAX + 64];
		snprintf(text, sizeof(text), "%s: command not found in the image", argv[0]);
		task_fail(127, text, 0);
	}
	if (apply_environment(sp, env, reply.env) != 0)
		task_fail(1, "srun --image: cannot set the container's environment", 0);
	if (*reply.notice)
		fputs(reply.notice, stderr);
	launch_reply_free(&reply);
	return 0;
}

/*
 * Prolog and epilog (root, on each node of the job): shifter-job-env prepares the job's
 * environment in shifterd from the SPANK_SHIFTER_* variables set at submit, or releases it.
 * A failure is logged and otherwise ignored: a non-zero prolog would drain the node (upstream's
 * behaviour), while the job's own `shifter` launches report the same problem to the user.
 */
static int job_env(spank_t sp, const char *action)
{
	uint32_t job_id;
	uid_t uid;
	gid_t gid;
	if (spank_get_item(sp, S_JOB_ID, &job_id) != ESPANK_SUCCESS ||
	    spank_get_item(sp, S_JOB_UID, &uid) != ESPANK_SUCCESS ||
	    spank_get_item(sp, S_JOB_GID, &gid) != ESPANK_SUCCESS) {
		slurm_error("shifter: %s: the job id, uid or gid is not available", action);
		return 0;
	}
	char job[16], uid_s[16], gid_s[16];
	snprintf(job, sizeof(job), "%u", job_id);
	snprintf(uid_s, sizeof(uid_s), "%u", (unsigned)uid);
	snprintf(gid_s, sizeof(gid_s), "%u", (unsigned)gid);
	const char *argv[] = { job_env_path, action, "--config", config_path, "--job", job,
		               "--uid",      uid_s,  "--gid",    gid_s,       NULL };
	char out[4096];
	int rc = run_program(argv, out, sizeof(out), 1);
	size_t len = strlen(out);
	while (len > 0 && out[len - 1] == '\n')
		out[--len] = '\0';
	if (rc != 0)
		slurm_error("shifter: job %s: %s failed (%d): %s", job, action, rc, out);
	else if (len > 0)
		slurm_info("%s", out);
	return 0;
}

/* slurm_spank_init does not run before these two: the plugin arguments come with the call. */
int slurm_spank_job_prolog(spank_t sp, int ac, char **av)
{
	if (parse_plugin_args(ac, av) != 0)
		return 0;
	return job_env(sp, "prepare");
}

int slurm_spank_job_epilog(spank_t sp, int ac, char **av)
{
	if (parse_plugin_args(ac, av) != 0)
		return 0;
	return job_env(sp, "release");
}

int slurm_spank_exit(spank_t sp, int ac, char **av)
{
	(void)sp;
	(void)ac;
	(void)av;
	free(opt_image);
	free(opt_volume);
	free(opt_module);
	opt_image = opt_volume = opt_module = NULL;
	return 0;
}
