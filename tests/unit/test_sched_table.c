/* The scheduler's table: entries found by name after any mix of adds and
 * removes, and taken out of the heap in order of due time. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "table.h"

#define N 20000

int
main(void)
{
	struct mesh_sched_table t;
	struct mesh_sched_entry *e;
	char name[32];
	int64_t prev = 0;
	int found = 0, missing = 0, order = 0, popped = 0;

	srand(7);
	mesh_sched_table_init(&t);
	for (int i = 0; i < N; i++) {
		snprintf(name, sizeof(name), "s%d", i);
		if (mesh_sched_table_add(&t, name, &e) != MESH_OK) {
			break;
		}
		e->fire = e->at = 1 + rand() % 100000;
		if (i % 7 == 0) {
			e->retry_fire = 1;
			e->retry_at = 1 + rand() % 100000;
		}
		mesh_sched_table_update(&t, e);
	}
	is_int(t.live, N, "%d entries", N);
	/* Remove every third; change the due time of every fifth. */
	for (int i = 0; i < N; i++) {
		snprintf(name, sizeof(name), "s%d", i);
		e = mesh_sched_table_find(&t, name);
		if (e == NULL) {
			continue;
		}
		if (i % 3 == 0) {
			mesh_sched_table_remove(&t, e);
		} else if (i % 5 == 0) {
			e->at = 1 + rand() % 100000;
			mesh_sched_table_update(&t, e);
		}
	}
	for (int i = 0; i < N; i++) {
		snprintf(name, sizeof(name), "s%d", i);
		e = mesh_sched_table_find(&t, name);
		if (i % 3 == 0) {
			missing += e == NULL;
		} else {
			found += e != NULL && strcmp(e->name, name) == 0;
		}
	}
	is_int(missing, (N + 2) / 3, "removed entries are gone");
	is_int(found, N - (N + 2) / 3, "the others are found by name");
	/* Re-add some removed: they reuse slots. */
	for (int i = 0; i < N; i += 30) {
		snprintf(name, sizeof(name), "s%d", i);
		mesh_sched_table_add(&t, name, &e);
		e->fire = e->at = 50000;
		mesh_sched_table_update(&t, e);
	}
	ok(mesh_sched_table_find(&t, "s30") != NULL, "re-added by name");
	while ((e = mesh_sched_table_pop(&t, INT64_MAX)) != NULL) {
		int64_t due = mesh_sched_entry_due(e);
		order += due < prev;
		prev = due;
		popped++;
	}
	is_int(order, 0, "popped in order of due time");
	is_int(popped, t.live, "every entry due was popped once");
	ok(mesh_sched_table_first(&t) == NULL, "and the heap is empty");
	mesh_sched_table_fini(&t);
	return tap_done();
}
