/* instance.c: a function's processes (see instance.h). */
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "instance.h"
#include "mesh/clock.h"

extern char **environ;

/* The environment of a child: ours, with f's entries and the supervisor's
 * over it, built before fork (the child only execs). own[0..1] get the
 * two strings made here (free them after). */
static char **
child_env(const struct mesh_function *f, const char *servers,
          const char *supervisor, char *own[2])
{
	size_t n = 0, k = 0;
	char **env;

	own[0] = own[1] = NULL;
	while (environ[n] != NULL) {
		n++;
	}
	if ((env = calloc(n + f->n_env + 3, sizeof(*env))) == NULL) {
		return NULL;
	}
	for (size_t i = 0; i < n; i++) {
		const char *eq = strchr(environ[i], '=');
		size_t len =
		        eq ? (size_t)(eq - environ[i]) : strlen(environ[i]);
		bool over = (servers != NULL && len == 8 &&
		             strncmp(environ[i], "NATS_URL", 8) == 0) ||
		            (len == 16 &&
		             strncmp(environ[i], "MESH_INSTANCE_OF", 16) == 0);
		for (size_t e = 0; !over && e < f->n_env; e++) {
			over = strncmp(f->env[e], environ[i], len) == 0 &&
			       f->env[e][len] == '=';
		}
		if (!over) {
			env[k++] = environ[i];
		}
	}
	for (size_t e = 0; e < f->n_env; e++) {
		env[k++] = f->env[e];
	}
	if (servers != NULL && asprintf(&own[0], "NATS_URL=%s", servers) > 0) {
		env[k++] = own[0];
	}
	if (asprintf(&own[1], "MESH_INSTANCE_OF=%s", supervisor) > 0) {
		env[k++] = own[1];
	}
	return env;
}

mesh_err
instance_start(const struct mesh_function *f, const char *servers,
               const char *supervisor, struct instance *out)
{
	char **argv = calloc(f->n_args + 2, sizeof(*argv));
	char *own[2];
	char **env = child_env(f, servers, supervisor, own);
	pid_t parent = getpid(), pid;
	sigset_t none;

	if (argv == NULL || env == NULL) {
		free(argv);
		free(env);
		free(own[0]);
		free(own[1]);
		return mesh_err_set(MESH_ENOMEM, "function '%s': start",
		                    f->name);
	}
	argv[0] = f->program;
	for (size_t i = 0; i < f->n_args; i++) {
		argv[i + 1] = f->args[i];
	}
	sigemptyset(&none);
	pid = fork();
	if (pid == 0) {
		/* The child: nothing but async-signal-safe calls. */
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		if (getppid() != parent) {
			_exit(0); /* the supervisor died meanwhile */
		}
		signal(SIGTERM, SIG_DFL);
		signal(SIGINT, SIG_DFL);
		signal(SIGCHLD, SIG_DFL);
		signal(SIGPIPE, SIG_DFL);
		sigprocmask(SIG_SETMASK, &none, NULL);
		execve(f->program, argv, env);
		_exit(127);
	}
	free(argv);
	free(env);
	free(own[0]);
	free(own[1]);
	if (pid < 0) {
		return mesh_err_set(MESH_ENOMEM, "function '%s': fork: %s",
		                    f->name, strerror(errno));
	}
	out->pid = pid;
	out->state = INSTANCE_STARTING;
	out->started_ms = mesh_wall_ms();
	out->started_mono = mesh_mono_ms();
	out->term_mono = 0;
	return MESH_OK;
}

void
instance_stop(struct instance *in)
{
	if (in->state != INSTANCE_STOPPING) {
		in->state = INSTANCE_STOPPING;
		in->term_mono = mesh_mono_ms();
		kill(in->pid, SIGTERM);
	}
}

const char *
instance_state_name(enum instance_state s)
{
	switch (s) {
	case INSTANCE_STARTING:
		return "starting";
	case INSTANCE_RUNNING:
		return "running";
	default:
		return "stopping";
	}
}
