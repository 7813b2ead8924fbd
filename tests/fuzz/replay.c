/* replay: run a fuzz target over every file of the folders given (its seed
 * corpus and the inputs of crashes found before), once each, as TAP. This
 * is how the gcc builds (build/, and build-san/ under ASan and UBSan) run
 * the targets: every seed and every regression input in every build,
 * without libFuzzer. A crash is the test's failure. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz.h"

/* Targets without one-time setup leave it undefined. */
__attribute__((weak)) int LLVMFuzzerInitialize(int *argc, char ***argv);

static int tests;

static int
by_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int
replay_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	uint8_t *buf = NULL;
	long len;
	int rc = -1;

	if (f == NULL || fseek(f, 0, SEEK_END) != 0 || (len = ftell(f)) < 0 ||
	    fseek(f, 0, SEEK_SET) != 0) {
		goto done;
	}
	/* One byte more than needed, so that an empty file is a valid
	 * pointer as libFuzzer gives. */
	if ((buf = malloc((size_t)len + 1)) == NULL ||
	    fread(buf, 1, (size_t)len, f) != (size_t)len) {
		goto done;
	}
	LLVMFuzzerTestOneInput(buf, (size_t)len);
	rc = 0;
done:
	if (f != NULL) {
		fclose(f);
	}
	free(buf);
	return rc;
}

/* Every regular file of dir, in name order, so that runs are alike. A
 * missing folder holds nothing (a target with no crash found yet). */
static int
replay_dir(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	char **names = NULL;
	size_t n = 0, cap = 0;
	int failed = 0;

	if (d == NULL) {
		return errno == ENOENT ? 0 : 1;
	}
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.') {
			continue;
		}
		if (n == cap) {
			char **more;
			cap = cap ? 2 * cap : 64;
			if ((more = realloc(names, cap * sizeof(*names))) ==
			    NULL) {
				failed = 1;
				break;
			}
			names = more;
		}
		if ((names[n] = strdup(e->d_name)) == NULL) {
			failed = 1;
			break;
		}
		n++;
	}
	closedir(d);
	if (n > 0) {
		qsort(names, n, sizeof(*names), by_name);
	}
	for (size_t i = 0; i < n; i++) {
		char path[4096];
		struct stat st;
		snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
		if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
			int rc = replay_file(path);
			printf("%s %d - %s\n", rc == 0 ? "ok" : "not ok",
			       ++tests, path);
			failed |= rc != 0;
		}
		free(names[i]);
	}
	free(names);
	return failed;
}

int
main(int argc, char **argv)
{
	int failed = 0;

	if (LLVMFuzzerInitialize != NULL) {
		LLVMFuzzerInitialize(&argc, &argv);
	}
	for (int i = 1; i < argc; i++) {
		failed |= replay_dir(argv[i]);
	}
	if (tests == 0) {
		printf("not ok 1 - no inputs in the folders given\n");
		tests = 1;
		failed = 1;
	}
	printf("1..%d\n", tests);
	return failed;
}
