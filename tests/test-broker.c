/* test-broker: a nats-server for shell tests. Prints its URL on stdout,
 * then runs until its standard input closes (or it is killed), and always
 * stops the server and removes its store. Usage: test-broker [CONF-TEXT] */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

int
main(int argc, char **argv)
{
	struct test_broker b;
	char c;

	if (argc > 1 && strcmp(argv[1], "--help") == 0) {
		printf("Usage: test-broker [EXTRA-CONFIG]\n"
		       "Starts nats-server -js on a free loopback port, "
		       "prints "
		       "its URL and\nits folder, and stops it when standard "
		       "input closes.\n");
		return 0;
	}
	if (!test_broker_start(&b, argc > 1 ? argv[1] : NULL)) {
		return 1;
	}
	printf("%s %s\n", b.url, b.dir);
	fflush(stdout);
	while (read(0, &c, 1) > 0) {
	}
	test_broker_stop(&b);
	return 0;
}
