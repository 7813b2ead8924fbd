/* The runtime's retry policy (services/runtime/retry.h): exponential
 * back-off with jitter, capped, and when an event gives up. */
#include "harness.h"
#include "retry.h"

int
main(void)
{
	int64_t lo = INT64_MAX, hi = 0;
	bool capped = true, grows = true;

	for (int i = 0; i < 2000; i++) {
		int64_t d = mesh__backoff_ms(1000, 60000, 1);
		lo = d < lo ? d : lo;
		hi = d > hi ? d : hi;
	}
	ok(lo >= 500 && hi <= 1500,
	   "attempt 1: base with a jitter of 0.5-1.5 (%lld-%lld ms)",
	   (long long)lo, (long long)hi);
	ok(hi - lo > 800, "... spread over that range, not one value");
	for (int attempt = 1; attempt < 12; attempt++) {
		int64_t expect = 1000LL << (attempt - 1);
		expect = expect > 60000 ? 60000 : expect;
		for (int i = 0; i < 200; i++) {
			int64_t d = mesh__backoff_ms(1000, 60000, attempt);
			grows = grows && d >= expect / 2 &&
			        d <= expect + expect / 2;
			capped = capped && d <= 90000;
		}
	}
	ok(grows, "attempt n: 1 s doubling, each within its jitter");
	ok(capped, "never past the cap with its jitter (90 s)");
	ok(mesh__backoff_ms(50, 200, 100) <= 300,
	   "a hundredth attempt is capped too (no overflow)");
	ok(mesh__backoff_ms(0, 0, 1) == 0, "a zero base means at once");

	ok(!mesh__retry_exhausted(1, 5, false), "attempt 1 of 5: again");
	ok(!mesh__retry_exhausted(4, 5, false), "attempt 4 of 5: again");
	ok(mesh__retry_exhausted(5, 5, false),
	   "attempt 5 of 5: to the dead-letter queue");
	ok(mesh__retry_exhausted(9, 5, false), "past it too");
	ok(!mesh__retry_exhausted(9, 5, true),
	   "a source that redrives by itself decides instead");
	return tap_done();
}
