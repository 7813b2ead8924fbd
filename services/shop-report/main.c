/* shop-report: the shop's account, read from the services' LMDB
 * environments (read-only; the services may be running).
 *
 *   shop-report [--state ROOT]... [--prefix P] [--expect N] [--countries LIST]
 *               [--wait SECONDS] [--verbose]
 *
 * Prints "orders: N placed, N shipped, N notified, N filtered,
 * duplicates N, lost N" for the orders whose id begins with P, and exits
 * 0 only when the account is whole (see report.h); with --wait, reads
 * again every 200 ms until it is, for up to SECONDS. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "report.h"
#include "shop.h"

static const char usage[] =
        "usage: shop-report [--state ROOT]... [--prefix P] [--expect N]\n"
        "                   [--countries LIST] [--wait SECONDS] [--verbose]\n"
        "  --state ROOT      the services' environments are ROOT/NAME "
        "(var/services);\n"
        "                    again for each instance's folder: a "
        "partitioned\n"
        "                    service's partition K is read from the copy "
        "furthest\n"
        "                    along its changelog (its owner's)\n"
        "  --prefix P        only the orders whose id begins with P\n"
        "  --expect N        N orders were placed (fewer stored: lost)\n"
        "  --countries LIST  the shippable countries "
        "(SHOP_COUNTRIES; " SHOP_COUNTRIES_DEFAULT ")\n"
        "  --wait SECONDS    read again until the account is whole\n"
        "  --verbose         also each service's repeats, summaries, outbox\n"
        "Exit status: 0 whole, 1 not (or unreadable), 2 usage.\n";

int
main(int argc, char **argv)
{
	const char *countries = shop_countries_arg(&argc, argv);
	const char *roots[16] = {"var/services"}, *prefix = "";
	int n_roots = 0;
	unsigned long long expect = 0;
	double wait_s = 0;
	bool verbose = false, whole;
	struct shop_report r;
	char line[256], err[512];

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i],
		           *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (strcmp(a, "--verbose") == 0) {
			verbose = true;
			continue;
		}
		if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			fputs(usage, stdout);
			return 0;
		}
		if (v == NULL) {
			fputs(usage, stderr);
			return 2;
		}
		if (strcmp(a, "--state") == 0) {
			if (n_roots == 16) {
				fputs("shop-report: at most 16 --state\n",
				      stderr);
				return 2;
			}
			roots[n_roots++] = v;
		} else if (strcmp(a, "--prefix") == 0) {
			prefix = v;
		} else if (strcmp(a, "--expect") == 0) {
			expect = strtoull(v, NULL, 10);
		} else if (strcmp(a, "--wait") == 0) {
			wait_s = strtod(v, NULL);
		} else {
			fputs(usage, stderr);
			return 2;
		}
		i++;
	}
	for (long reads = (long)(wait_s * 5);; reads--) { /* 5 a second */
		if (!shop_report_read_roots(roots, n_roots ? n_roots : 1,
		                            prefix, countries, &r, err,
		                            sizeof err)) {
			fprintf(stderr, "shop-report: %s\n", err);
			return 1;
		}
		whole = shop_report_agrees(&r, expect);
		if (whole || reads <= 0) {
			break;
		}
		nanosleep(&(struct timespec){0, 200 * 1000 * 1000}, NULL);
	}
	shop_report_line(&r, expect, line, sizeof line);
	puts(line);
	if (verbose) {
		printf("orders: %llu shippable, %llu repeats, %llu summaries; "
		       "stray %llu; outbox records %llu, %llu, %llu; "
		       "processed ids %llu, %llu, %llu\n",
		       (unsigned long long)r.shippable,
		       (unsigned long long)r.repeats,
		       (unsigned long long)r.summaries,
		       (unsigned long long)r.stray,
		       (unsigned long long)r.outbox[0],
		       (unsigned long long)r.outbox[1],
		       (unsigned long long)r.outbox[2],
		       (unsigned long long)r.processed[0],
		       (unsigned long long)r.processed[1],
		       (unsigned long long)r.processed[2]);
	}
	return whole ? 0 : 1;
}
