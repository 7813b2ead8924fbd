/* A service run on a thread of the test (mesh_service_run until told to
 * stop), for the tests that drive the runtime in process. */
#ifndef TESTS_SERVICE_THREAD_H
#define TESTS_SERVICE_THREAD_H

#include <pthread.h>
#include <signal.h>
#include <stdbool.h>

#include "mesh/service.h"

struct running {
	struct mesh_service *s; /* set before running_start */
	struct mesh_conn *c;    /* set before running_start */
	volatile sig_atomic_t stop;
	pthread_t t;
	mesh_err err; /* mesh_service_run's, after running_stop */
};

/* Run r->s on r->c on a new thread; false when no thread started. */
bool running_start(struct running *r);

/* Set r->stop and wait for the service to return; its error. */
mesh_err running_stop(struct running *r);

#endif
