/* service_thread.c: see service_thread.h. */
#include "service_thread.h"

static void *
run_main(void *arg)
{
	struct running *r = arg;

	r->err = mesh_service_run(r->s, r->c, &r->stop);
	return NULL;
}

bool
running_start(struct running *r)
{
	r->stop = 0;
	r->err = MESH_OK;
	return pthread_create(&r->t, NULL, run_main, r) == 0;
}

mesh_err
running_stop(struct running *r)
{
	r->stop = 1;
	pthread_join(r->t, NULL);
	return r->err;
}
