/* The shop's end-to-end account, read from the three services' LMDB
 * environments (read-only, safe while they run): what was placed, shipped
 * and notified, and whatever breaks the promise (a duplicate, a gap, an
 * outbox left unpublished). shop-report prints it; the tests check it.
 *
 * Thread safety: a call opens and closes the environments itself; do not
 * call it from a process that has one of them open already (LMDB allows
 * one open per process).
 */
#ifndef SHOP_REPORT_H
#define SHOP_REPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct shop_report {
	uint64_t placed;        /* order/ keys */
	uint64_t shippable;     /* of which to a shippable country */
	uint64_t filtered;      /* of which not: shipping never saw them */
	uint64_t shipped;       /* shipment/ keys */
	uint64_t notified;      /* sent/ keys */
	uint64_t duplicates;    /* dup/ counts: an order handled twice */
	uint64_t lost;          /* expected but not placed, shippable but not
	                           shipped, shipped but not notified */
	uint64_t stray;         /* a shipment of a filtered or unknown order, a
	                           notification of an unknown shipment */
	uint64_t repeats;       /* repeat/ counts: commands sent again */
	uint64_t summaries;     /* summary/ keys (not by prefix) */
	uint64_t outbox[3];     /* outbox records: orders, shipping,
	                           notifications (not by prefix) */
	uint64_t processed[3];  /* processed-id table sizes */
	uint64_t state_keys[3]; /* every key in each "state" database */
	uint64_t misplaced;     /* partitioned: an order's key outside its
	                           order id's partition */
	int partitions[3];      /* each service's partitions read (0: one
	                           environment) */
};

/* Read the account of the orders whose id begins with prefix ("" for all)
 * from root/orders, root/shipping and root/notifications (each an
 * environment, or a partitioned service's partitions p0, p1, ... there:
 * the owners' copies, or links to them); countries is the shippable list
 * (shop.h). A missing environment counts as empty. Returns
 * false, with the reason in err, when an environment can not be read. */
bool shop_report_read(const char *root, const char *prefix,
                      const char *countries, struct shop_report *r, char *err,
                      size_t errsize);

/* The same from several roots (the instances' state folders of services
 * run on several machines): a service's environment from the first root
 * that has it; a partitioned service's partition K from the root whose
 * copy is furthest along K's changelog (its owner's). */
bool shop_report_read_roots(const char *const *roots, int n_roots,
                            const char *prefix, const char *countries,
                            struct shop_report *r, char *err, size_t errsize);

/* Whether the account is whole: expected (0: any) orders placed, every
 * shippable one shipped and notified once, nothing else shipped, no
 * duplicate, nothing lost. (Not the outboxes: a running service deletes
 * its published records with its next batch, or when it stops.) */
bool shop_report_agrees(const struct shop_report *r, uint64_t expected);

/* "orders: 200 placed, 170 shipped, 170 notified, 30 filtered,
 * duplicates 0, lost 0" (lost counting orders expected but not placed). */
void shop_report_line(const struct shop_report *r, uint64_t expected,
                      char *buf, size_t size);

#endif
