/* outlet.c: the gateway's pipelined senders, one thread a target
 * (outlet.h). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mesh/queue.h"
#include "mesh/topic.h"
#include "outlet.h"

/* Senders per target: a job that comes while one lane waits for its
 * confirmations goes to another, not after them. */
#define LANES 4

struct outlet {
	struct gw_outlets *os;
	char target[MESH_ROUTE_TARGET_MAX + 1];
	mesh_route_kind kind;
	pthread_t t;
	struct gw_job *head, *tail; /* waiting to be sent; os->mu */
	bool stop;
	bool flushing; /* waiting for confirmations; os->mu */
	struct outlet *next;
};

struct gw_outlets {
	struct mesh_conn *c;
	pthread_mutex_t mu;
	pthread_cond_t cv; /* a job posted, or stop */
	struct outlet *list;
	bool stopping;
};

mesh_err
gw_outlets_new(struct mesh_conn *c, struct gw_outlets **out)
{
	struct gw_outlets *os = calloc(1, sizeof(*os));

	if (os == NULL) {
		return mesh_err_set(MESH_ENOMEM, "the gateway's outlets");
	}
	os->c = c;
	pthread_mutex_init(&os->mu, NULL);
	pthread_cond_init(&os->cv, NULL);
	*out = os;
	return MESH_OK;
}

static void
job_end(struct gw_job *j, mesh_err err, const char *why)
{
	struct mesh_sent r = {.err = err};

	snprintf(r.error, sizeof(r.error), "%s", why);
	mesh_event_free(j->event);
	j->event = NULL;
	j->done(j, &r);
}

static void
on_sent(void *arg, void *tag, const struct mesh_sent *r)
{
	struct gw_job *j = tag;

	(void)arg;
	mesh_event_free(j->event);
	j->event = NULL;
	j->done(j, r);
}

/* The queue or topic and its sender, opened for a batch of jobs. */
struct way {
	struct mesh_queue *q;
	struct mesh_topic *t;
	struct mesh_sender *s;
	bool fifo;
};

static mesh_err
way_open(struct outlet *o, struct way *w)
{
	const char *name = strchr(o->target, ':') + 1;
	mesh_err err;

	memset(w, 0, sizeof(*w));
	if (o->kind == MESH_ROUTE_QUEUE) {
		if ((err = mesh_queue_open(o->os->c, name, &w->q)) ==
		    MESH_OK) {
			w->fifo = mesh_queue_attrs(w->q)->fifo;
			err = mesh_sender_open_queue(w->q, NULL, on_sent, o,
			                             &w->s);
		}
	} else {
		if ((err = mesh_topic_open(o->os->c, name, &w->t)) ==
		    MESH_OK) {
			w->fifo = mesh_topic_attrs(w->t)->fifo;
			err = mesh_sender_open_topic(w->t, NULL, on_sent, o,
			                             &w->s);
		}
	}
	return err;
}

static void
way_close(struct way *w)
{
	mesh_sender_close(w->s);
	mesh_queue_close(w->q);
	mesh_topic_close(w->t);
	memset(w, 0, sizeof(*w));
}

static void *
outlet_main(void *arg)
{
	struct outlet *o = arg;
	struct gw_outlets *os = o->os;
	struct way w = {0};
	bool open = false;

	pthread_mutex_lock(&os->mu);
	while (!o->stop || o->head != NULL) {
		struct gw_job *batch = o->head;
		if (batch == NULL) {
			pthread_cond_wait(&os->cv, &os->mu);
			continue;
		}
		o->head = o->tail = NULL;
		pthread_mutex_unlock(&os->mu);
		/* Opened again after a failure: the target may be back. */
		mesh_err err = open ? MESH_OK : way_open(o, &w);
		if (err != MESH_OK) {
			char why[256];
			snprintf(why, sizeof(why), "%s", mesh_errdetail());
			way_close(&w);
			while (batch != NULL) {
				struct gw_job *j = batch;
				batch = j->next;
				job_end(j, err, why);
			}
			pthread_mutex_lock(&os->mu);
			continue;
		}
		open = true;
		while (batch != NULL) {
			struct gw_job *j = batch;
			struct mesh_send m = {.event = j->event, .tag = j};
			batch = j->next;
			if (w.fifo) {
				m.group_id = j->group_id;
				m.dedup_id = j->dedup_id;
			}
			if (mesh_sender_send(w.s, &m) != MESH_OK) {
				job_end(j, MESH_EUNREACHABLE,
				        mesh_errdetail());
			}
		}
		pthread_mutex_lock(&os->mu);
		if (o->head == NULL) {
			o->flushing = true;
			pthread_mutex_unlock(&os->mu);
			mesh_sender_flush(w.s);
			pthread_mutex_lock(&os->mu);
			o->flushing = false;
		}
	}
	pthread_mutex_unlock(&os->mu);
	way_close(&w);
	return NULL;
}

mesh_err
gw_outlet_post(struct gw_outlets *os, const char *target, mesh_route_kind kind,
               struct gw_job *j)
{
	struct outlet *o = NULL;
	int lanes = 0;

	j->next = NULL;
	pthread_mutex_lock(&os->mu);
	if (os->stopping) {
		pthread_mutex_unlock(&os->mu);
		return mesh_err_set(MESH_ECLOSED, "the gateway is stopping");
	}
	/* A lane not waiting for confirmations, else a new one, else the
	 * first. */
	for (struct outlet *l = os->list; l != NULL; l = l->next) {
		if (strcmp(l->target, target) != 0) {
			continue;
		}
		lanes++;
		if (o == NULL || (o->flushing && !l->flushing)) {
			o = l;
		}
	}
	if (o == NULL || (o->flushing && lanes < LANES)) {
		if ((o = calloc(1, sizeof(*o))) == NULL) {
			pthread_mutex_unlock(&os->mu);
			return mesh_err_set(MESH_ENOMEM, "outlet '%s'",
			                    target);
		}
		o->os = os;
		o->kind = kind;
		snprintf(o->target, sizeof(o->target), "%s", target);
		if (pthread_create(&o->t, NULL, outlet_main, o) != 0) {
			free(o);
			pthread_mutex_unlock(&os->mu);
			return mesh_err_set(MESH_ENOMEM, "outlet '%s': thread",
			                    target);
		}
		o->next = os->list;
		os->list = o;
	}
	if (o->tail != NULL) {
		o->tail->next = j;
	} else {
		o->head = j;
	}
	o->tail = j;
	pthread_cond_broadcast(&os->cv);
	pthread_mutex_unlock(&os->mu);
	return MESH_OK;
}

void
gw_outlets_free(struct gw_outlets *os)
{
	if (os == NULL) {
		return;
	}
	pthread_mutex_lock(&os->mu);
	os->stopping = true;
	for (struct outlet *o = os->list; o != NULL; o = o->next) {
		o->stop = true;
	}
	pthread_cond_broadcast(&os->cv);
	pthread_mutex_unlock(&os->mu);
	while (os->list != NULL) {
		struct outlet *o = os->list;
		os->list = o->next;
		pthread_join(o->t, NULL);
		free(o);
	}
	pthread_mutex_destroy(&os->mu);
	pthread_cond_destroy(&os->cv);
	free(os);
}
