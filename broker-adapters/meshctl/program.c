/* program.c: running a service program to ask it about itself. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mesh/clock.h"
#include "program.h"

/* In the child: the variables, standard output to out, exec; never
 * returns. */
static void
child(const struct cli *cli, const char *program, char *const *args,
      size_t n_args, char *const *env, size_t n_env, const char *flag, int out)
{
	const struct mesh_conn_opts *o = &cli->conn;
	const struct {
		const char *name, *value;
	} vars[] = {
	        {"NATS_URL", o->servers},
	        {"NATS_USER", o->user},
	        {"NATS_PASSWORD", o->password},
	        {"NATS_TOKEN", o->token},
	        {"NATS_NKEY", o->nkey_seed_file},
	        {"NATS_CREDS", o->creds_file},
	        {"NATS_CA", o->tls_ca},
	        {"NATS_CERT", o->tls_cert},
	        {"NATS_KEY", o->tls_key},
	};
	char **argv = calloc(n_args + 3, sizeof(*argv));
	int devnull = open("/dev/null", O_RDONLY);

	for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++) {
		if (vars[i].value != NULL) {
			setenv(vars[i].name, vars[i].value, 1);
		}
	}
	for (size_t i = 0; i < n_env; i++) {
		putenv(env[i]);
	}
	if (argv == NULL || dup2(out, STDOUT_FILENO) < 0) {
		_exit(127);
	}
	if (devnull >= 0) {
		dup2(devnull, STDIN_FILENO);
	}
	argv[0] = (char *)program;
	for (size_t i = 0; i < n_args; i++) {
		argv[i + 1] = args[i];
	}
	argv[n_args + 1] = (char *)flag;
	execv(program, argv);
	fprintf(stderr, "%s: %s\n", program, strerror(errno));
	_exit(127);
}

mesh_err
program_run(const struct cli *cli, const char *program, char *const *args,
            size_t n_args, char *const *env, size_t n_env, const char *flag,
            int64_t limit_ms, char **out, int *status)
{
	int fds[2], ws = 0;
	size_t len = 0, cap = 4096;
	char *buf = malloc(cap);
	int64_t deadline = mesh_mono_ms() + limit_ms;
	bool timed_out = false;
	pid_t pid;

	if (buf == NULL) {
		return mesh_err_set(MESH_ENOMEM, "program '%s'", program);
	}
	if (pipe(fds) != 0) {
		free(buf);
		return mesh_err_errno(errno, "program '%s': pipe", program);
	}
	fflush(NULL);
	if ((pid = fork()) < 0) {
		free(buf);
		close(fds[0]);
		close(fds[1]);
		return mesh_err_errno(errno, "program '%s': fork", program);
	}
	if (pid == 0) {
		close(fds[0]);
		child(cli, program, args, n_args, env, n_env, flag, fds[1]);
	}
	close(fds[1]);
	for (;;) {
		struct pollfd p = {.fd = fds[0], .events = POLLIN};
		int64_t left = deadline - mesh_mono_ms();
		ssize_t r;
		if (left <= 0) {
			timed_out = true;
			break;
		}
		if (poll(&p, 1, (int)left) <= 0) {
			continue; /* EINTR, or the time is up */
		}
		if (len + 1 == cap && cap < PROGRAM_OUTPUT_MAX) {
			char *more = realloc(buf, cap * 2);
			if (more != NULL) {
				buf = more;
				cap *= 2;
			}
		}
		r = read(fds[0], buf + len, len + 1 < cap ? cap - len - 1 : 0);
		if (r < 0 && errno == EINTR) {
			continue;
		}
		if (r <= 0) {
			break; /* its end, or more than we read */
		}
		len += (size_t)r;
	}
	close(fds[0]);
	if (timed_out) {
		kill(pid, SIGKILL);
	}
	while (waitpid(pid, &ws, 0) < 0 && errno == EINTR) {
	}
	buf[len] = '\0';
	*out = buf;
	*status = timed_out         ? -1
	          : WIFEXITED(ws)   ? WEXITSTATUS(ws)
	          : WIFSIGNALED(ws) ? 128 + WTERMSIG(ws)
	                            : 1;
	return MESH_OK;
}
