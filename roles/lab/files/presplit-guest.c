/*
 * presplit-guest: the lab guest's workload (runs as the initramfs' main
 * process under a tiny TCG domain).
 *
 * It owns a buffer of BUF_MIB MiB, rewrites pages at DIRTY_MIB_S MiB/s (0 =
 * idle), and keeps re-verifying every page against the content it must
 * hold.  A page's content is a pure function of (page index, generation,
 * word index) and the generation of every page lives in a separate table,
 * so any byte a live migration loses or corrupts -- in the buffer or in the
 * table -- shows up as a mismatch.  The whole buffer is verified about once a
 * second (less when the CPU cannot keep up: see passes=).  Once a second it prints one status line
 * on the console:
 *
 *   presplit-guest seq=12 up_ms=12003 buf_mib=16 dirty_mib_s=8
 *     dirtied_mib=96 verified_pages=49152 passes=12 errors=0
 *
 * (one line).  seq increasing says the guest is alive; errors=0 says no
 * corruption was seen.  The first mismatches are also printed in detail.
 *
 * Usage: presplit-guest [BUF_MIB [DIRTY_MIB_S]]
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define PAGE_WORDS (4096 / sizeof(uint64_t))
#define SLICES_PER_SECOND 20
#define MAX_REPORTED_ERRORS 10

static uint64_t expected_word(uint64_t page, uint32_t generation, uint64_t word)
{
	/* splitmix64 finaliser: every (page, generation, word) differs. */
	uint64_t x = (page << 32) ^ ((uint64_t)generation << 12) ^ word;

	x += 0x9e3779b97f4a7c15ULL;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void write_page(uint64_t *buf, uint32_t *generations, uint64_t page)
{
	uint64_t *p = buf + page * PAGE_WORDS;
	uint32_t generation = generations[page] + 1;

	for (uint64_t w = 0; w < PAGE_WORDS; w++)
		p[w] = expected_word(page, generation, w);
	generations[page] = generation;
}

/* Returns the number of mismatching words found in the page. */
static uint64_t verify_page(const uint64_t *buf, const uint32_t *generations,
			    uint64_t page, uint64_t errors_so_far)
{
	const volatile uint64_t *p = buf + page * PAGE_WORDS;
	uint32_t generation = generations[page];
	uint64_t bad = 0;

	for (uint64_t w = 0; w < PAGE_WORDS; w++) {
		uint64_t want = expected_word(page, generation, w);
		uint64_t got = p[w];

		if (got == want)
			continue;
		if (errors_so_far + bad < MAX_REPORTED_ERRORS)
			printf("presplit-guest MISMATCH page=%llu word=%llu generation=%u "
			       "expected=%016llx got=%016llx\n",
			       (unsigned long long)page, (unsigned long long)w,
			       generation, (unsigned long long)want,
			       (unsigned long long)got);
		bad++;
	}
	return bad;
}

int main(int argc, char **argv)
{
	uint64_t buf_mib = argc > 1 ? strtoull(argv[1], NULL, 10) : 16;
	uint64_t dirty_mib_s = argc > 2 ? strtoull(argv[2], NULL, 10) : 0;
	uint64_t pages = buf_mib * 256;
	uint64_t *buf;
	uint32_t *generations;
	uint64_t seq = 0, dirtied_pages = 0, verified_pages = 0, passes = 0;
	uint64_t errors = 0, dirty_cursor = 0, verify_cursor = 0;
	uint64_t start, next_report, slice_ms = 1000 / SLICES_PER_SECOND;
	/* Pages to dirty per slice, carried as a remainder so low rates work. */
	uint64_t dirty_debt_num = 0;
	uint64_t verify_per_slice = (pages + SLICES_PER_SECOND - 1) / SLICES_PER_SECOND;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (pages == 0) {
		printf("presplit-guest FATAL buf_mib must be > 0\n");
		return 1;
	}
	buf = mmap(NULL, pages * 4096, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	generations = calloc(pages, sizeof(*generations));
	if (buf == MAP_FAILED || !generations) {
		printf("presplit-guest FATAL cannot allocate %llu MiB\n",
		       (unsigned long long)buf_mib);
		return 1;
	}
	for (uint64_t page = 0; page < pages; page++)
		write_page(buf, generations, page);

	start = now_ms();
	next_report = start + 1000;
	for (;;) {
		uint64_t slice_end = now_ms() + slice_ms;

		/* Dirty this slice's share of the rate, round-robin. */
		dirty_debt_num += dirty_mib_s * 256;
		while (dirty_debt_num >= SLICES_PER_SECOND) {
			dirty_debt_num -= SLICES_PER_SECOND;
			write_page(buf, generations, dirty_cursor);
			dirty_cursor = (dirty_cursor + 1) % pages;
			dirtied_pages++;
		}
		/*
		 * Verify at most one full pass per second, then sleep: under TCG
		 * a busy guest costs a whole host CPU, and the lab runs several.
		 */
		for (uint64_t i = 0; i < verify_per_slice && now_ms() < slice_end; i++) {
			errors += verify_page(buf, generations, verify_cursor, errors);
			verified_pages++;
			if (++verify_cursor == pages) {
				verify_cursor = 0;
				passes++;
			}
		}
		/*
		 * One clock read per step: with two, the slice can end between
		 * the check and the subtraction, and the unsigned difference
		 * wraps to a sleep of about 71 minutes (a guest under nested TCG
		 * did that, looking hung).
		 */
		for (uint64_t now = now_ms(); now < slice_end; now = now_ms())
			usleep(1000 * (slice_end - now));

		if (now_ms() >= next_report) {
			seq++;
			printf("presplit-guest seq=%llu up_ms=%llu buf_mib=%llu "
			       "dirty_mib_s=%llu dirtied_mib=%llu verified_pages=%llu "
			       "passes=%llu errors=%llu\n",
			       (unsigned long long)seq,
			       (unsigned long long)(now_ms() - start),
			       (unsigned long long)buf_mib,
			       (unsigned long long)dirty_mib_s,
			       (unsigned long long)(dirtied_pages / 256),
			       (unsigned long long)verified_pages,
			       (unsigned long long)passes,
			       (unsigned long long)errors);
			next_report += 1000;
			if (next_report < now_ms())
				next_report = now_ms() + 1000;
		}
	}
}
