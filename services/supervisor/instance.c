/* instance.c: a function's processes (see instance.h). */
#include <errno.h>
#include <fcntl.h>
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

static bool
env_sets(const struct mesh_function *f, const char *key, size_t len)
{
	for (size_t e = 0; e < f->n_env; e++) {
		if (strncmp(f->env[e], key, len) == 0 &&
		    f->env[e][len] == '=') {
			return true;
		}
	}
	return false;
}

/* The environment of a child: ours, with f's entries and the supervisor's
 * over it, built before fork (the child only execs). own[0..2] get the
 * strings made here (free them after). */
static char **
child_env(const struct mesh_function *f, const struct instance_env *ie,
          char *own[3])
{
	size_t n = 0, k = 0;
	char **env;

	own[0] = own[1] = own[2] = NULL;
	while (environ[n] != NULL) {
		n++;
	}
	if ((env = calloc(n + f->n_env + 4, sizeof(*env))) == NULL) {
		return NULL;
	}
	if (ie->servers != NULL &&
	    asprintf(&own[0], "NATS_URL=%s", ie->servers) < 0) {
		own[0] = NULL;
	}
	if (asprintf(&own[1], "MESH_INSTANCE_OF=%s", ie->supervisor) < 0) {
		own[1] = NULL;
	}
	if (ie->state_root != NULL && !env_sets(f, "MESH_STATE", 10) &&
	    asprintf(&own[2], "MESH_STATE=%s/%s", ie->state_root, f->name) <
	            0) {
		own[2] = NULL;
	}
	for (size_t i = 0; i < n; i++) {
		const char *eq = strchr(environ[i], '=');
		size_t len =
		        eq ? (size_t)(eq - environ[i]) : strlen(environ[i]);
		bool over = env_sets(f, environ[i], len);
		for (int o = 0; !over && o < 3; o++) {
			over = own[o] != NULL &&
			       strncmp(own[o], environ[i], len + 1) == 0;
		}
		if (!over) {
			env[k++] = environ[i];
		}
	}
	for (size_t e = 0; e < f->n_env; e++) {
		env[k++] = f->env[e];
	}
	for (int o = 0; o < 3; o++) {
		if (own[o] != NULL) {
			env[k++] = own[o];
		}
	}
	return env;
}

mesh_err
instance_start(const struct mesh_function *f, const struct instance_env *ie,
               struct instance *out)
{
	char **argv = calloc(f->n_args + 2, sizeof(*argv));
	char *own[3];
	char **env = child_env(f, ie, own);
	pid_t parent = getpid(), pid = -1;
	int log = -1, err = 0;
	sigset_t none;

	if (argv == NULL || env == NULL) {
		err = ENOMEM;
		goto out;
	}
	if (ie->log_dir != NULL) {
		char path[4096];
		snprintf(path, sizeof(path), "%s/%s.log", ie->log_dir,
		         f->name);
		if ((log = open(path,
		                O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC,
		                0644)) < 0) {
			free(argv);
			free(env);
			for (int o = 0; o < 3; o++) {
				free(own[o]);
			}
			return mesh_err_set(MESH_EIO,
			                    "function '%s': log %s: %s",
			                    f->name, path, strerror(errno));
		}
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
		if (log >= 0) {
			dup2(log, 1);
			dup2(log, 2);
		}
		signal(SIGTERM, SIG_DFL);
		signal(SIGINT, SIG_DFL);
		signal(SIGCHLD, SIG_DFL);
		signal(SIGPIPE, SIG_DFL);
		sigprocmask(SIG_SETMASK, &none, NULL);
		execve(f->program, argv, env);
		_exit(127);
	}
	err = pid < 0 ? errno : 0;
out:
	if (log >= 0) {
		close(log);
	}
	free(argv);
	free(env);
	for (int o = 0; o < 3; o++) {
		free(own[o]);
	}
	if (err != 0) {
		return mesh_err_set(MESH_ENOMEM, "function '%s': start: %s",
		                    f->name, strerror(err));
	}
	out->pid = pid;
	out->state = INSTANCE_STARTING;
	out->started_ms = mesh_wall_ms();
	out->started_mono = mesh_mono_ms();
	out->term_mono = 0;
	out->requests = 0;
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
