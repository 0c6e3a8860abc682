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
 *                 [job_check=/path/shifter-job-check]
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <slurm/spank.h>

SPANK_PLUGIN(shifter, 1);

#ifndef SHIFTER_UDIROOT_CONF
#define SHIFTER_UDIROOT_CONF "/etc/shifter/udiRoot.conf"
#endif
#ifndef SHIFTER_JOB_CHECK
#define SHIFTER_JOB_CHECK "/usr/libexec/shifter/shifter-job-check"
#endif

/* The job check prints at most a few short lines; anything longer is a bug, not a job. */
#define CHECK_OUTPUT_MAX 65536

static const char *config_path = SHIFTER_UDIROOT_CONF;
static const char *job_check_path = SHIFTER_JOB_CHECK;
static int long_options;

static char *opt_image;
static char *opt_volume;
static char *opt_module;

enum { OPT_IMAGE, OPT_VOLUME, OPT_MODULE };

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

static int option_cb(int val, const char *optarg, int remote)
{
	(void)remote;
	if (optarg == NULL)
		optarg = "";
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

static int parse_plugin_args(int ac, char **av)
{
	for (int i = 0; i < ac; i++) {
		if (strncmp(av[i], "shifter_config=", 15) == 0 && av[i][15] == '/') {
			config_path = av[i] + 15;
		} else if (strncmp(av[i], "job_check=", 10) == 0 && av[i][10] == '/') {
			job_check_path = av[i] + 10;
		} else if (strcmp(av[i], "long_options") == 0) {
			long_options = 1;
		} else {
			slurm_error(
				"shifter: plugin argument '%s' is not understood (shifter_config=/abs/udiRoot.conf, "
				"job_check=/abs/path, long_options); fix plugstack.conf",
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
		if (dup2(fds[1], STDOUT_FILENO) < 0)
			_exit(125);
		execv(job_check_path, (char *const *)argv);
		dprintf(STDERR_FILENO, "shifter: cannot run the job check %s: %s; check job_check= in plugstack.conf\n",
		        job_check_path, strerror(errno));
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
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		return -1;
	if (overflow) {
		slurm_error("shifter: the job check %s printed more than %d bytes", job_check_path, CHECK_OUTPUT_MAX);
		return -1;
	}
	return 0;
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

int slurm_spank_init_post_opt(spank_t sp, int ac, char **av)
{
	(void)ac;
	(void)av;
	spank_context_t ctx = spank_context();
	if (ctx != S_CTX_ALLOCATOR && ctx != S_CTX_LOCAL)
		return 0;
	if (opt_image == NULL && opt_volume == NULL && opt_module == NULL)
		return 0;
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
